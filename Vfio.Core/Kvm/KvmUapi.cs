// Models the part of include/uapi/linux/kvm.h (v6.12) that a VMM needs to hand VFIO files
// to KVM: the system, VM and device ioctls, struct kvm_create_device, struct
// kvm_device_attr, the device types and the KVM_DEV_VFIO_FILE attribute group.

using System.Runtime.InteropServices;

namespace Vfio.Core.Kvm;

/// <summary>KVM ioctl numbers (x86-64 encodings of _IO/_IOW/_IOWR on KVMIO = 0xAE).</summary>
public static class KvmIoctl
{
    /// <summary>KVMIO.</summary>
    public const uint Type = 0xAE;

    /// <summary>KVM_API_VERSION: what KVM_GET_API_VERSION returns.</summary>
    public const int ApiVersion = 12;

    /// <summary>KVM_GET_API_VERSION = _IO(KVMIO, 0x00) on /dev/kvm; the argument must be 0.</summary>
    public const uint GetApiVersion = (Type << 8) | 0x00;

    /// <summary>KVM_CREATE_VM = _IO(KVMIO, 0x01) on /dev/kvm; the argument is the machine type (0 on x86).</summary>
    public const uint CreateVm = (Type << 8) | 0x01;

    /// <summary>KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03) on /dev/kvm or a VM fd.</summary>
    public const uint CheckExtension = (Type << 8) | 0x03;

    /// <summary>KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xe0, struct kvm_create_device) on a VM fd.</summary>
    public const uint CreateDevice = 0xC0000000u | (12u << 16) | (Type << 8) | 0xE0;

    /// <summary>KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, struct kvm_device_attr) on a device fd.</summary>
    public const uint SetDeviceAttr = 0x40000000u | (24u << 16) | (Type << 8) | 0xE1;

    /// <summary>KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, struct kvm_device_attr) on a device fd.</summary>
    public const uint GetDeviceAttr = 0x40000000u | (24u << 16) | (Type << 8) | 0xE2;

    /// <summary>KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xe3, struct kvm_device_attr) on a device fd.</summary>
    public const uint HasDeviceAttr = 0x40000000u | (24u << 16) | (Type << 8) | 0xE3;

    /// <summary>KVM_CREATE_DEVICE_TEST: only check that the type exists.</summary>
    public const uint CreateDeviceTest = 1;

    /// <summary>KVM_CAP_DEVICE_CTRL: KVM_CREATE_DEVICE is available.</summary>
    public const uint CapDeviceCtrl = 89;

    /// <summary>The ioctl's name, for reasons.</summary>
    public static string Name(uint cmd) => cmd switch
    {
        GetApiVersion => "KVM_GET_API_VERSION",
        CreateVm => "KVM_CREATE_VM",
        CheckExtension => "KVM_CHECK_EXTENSION",
        CreateDevice => "KVM_CREATE_DEVICE",
        SetDeviceAttr => "KVM_SET_DEVICE_ATTR",
        GetDeviceAttr => "KVM_GET_DEVICE_ATTR",
        HasDeviceAttr => "KVM_HAS_DEVICE_ATTR",
        _ => $"ioctl 0x{cmd:x}",
    };
}

/// <summary>enum kvm_device_type.</summary>
public enum KvmDeviceType : uint
{
    FslMpic20 = 1,
    FslMpic42 = 2,
    Xics = 3,

    /// <summary>KVM_DEV_TYPE_VFIO: the KVM-VFIO pseudo device.</summary>
    Vfio = 4,
    ArmVgicV2 = 5,
    Flic = 6,
    ArmVgicV3 = 7,
    ArmVgicIts = 8,
    Xive = 9,
    ArmPvTime = 10,
    RiscvAia = 11,
}

/// <summary>The attribute groups and attributes of KVM_DEV_TYPE_VFIO.</summary>
public static class KvmDevVfio
{
    /// <summary>KVM_DEV_VFIO_FILE (alias KVM_DEV_VFIO_GROUP).</summary>
    public const uint File = 1;

    /// <summary>KVM_DEV_VFIO_FILE_ADD (alias KVM_DEV_VFIO_GROUP_ADD): addr points to an int32 fd of a vfio group or device file.</summary>
    public const ulong FileAdd = 1;

    /// <summary>KVM_DEV_VFIO_FILE_DEL (alias KVM_DEV_VFIO_GROUP_DEL).</summary>
    public const ulong FileDel = 2;

    /// <summary>KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: only on SPAPR (ENXIO here).</summary>
    public const ulong GroupSetSpaprTce = 3;
}

/// <summary>struct kvm_create_device (12 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCreateDevice
{
    /// <summary>in: a <see cref="KvmDeviceType"/>.</summary>
    public uint Type;

    /// <summary>out: the device fd.</summary>
    public uint Fd;

    /// <summary>in: <see cref="KvmIoctl.CreateDeviceTest"/> or 0.</summary>
    public uint Flags;
}

/// <summary>struct kvm_device_attr (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDeviceAttr
{
    /// <summary>No flags are defined; the kernel ignores them.</summary>
    public uint Flags;

    /// <summary>The attribute group (<see cref="KvmDevVfio.File"/>).</summary>
    public uint Group;

    /// <summary>The attribute within the group.</summary>
    public ulong Attr;

    /// <summary>A user pointer to the attribute's data.</summary>
    public ulong Addr;
}
