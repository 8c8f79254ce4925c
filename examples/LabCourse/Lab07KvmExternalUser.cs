// Lab 7: KVM as an external user of a vfio group — a solution on the public API
// (vfio-sim lab show 7). The group goes into a container with an IOMMU before KVM sees it,
// and KVM lets go of it before the group leaves its container: the order that is safe on
// every kernel since the external-user API was fixed (seed 004).

using System.Runtime.InteropServices;
using Vfio.Core.Client;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>A solution of lab 7.</summary>
internal sealed class Lab07KvmExternalUserSolution : KvmExternalUserSolution
{
    private VfioContainerFd? _container;
    private VfioGroupFd? _group;
    private VfioDeviceFd? _device;
    private UserBuffer? _arg;
    private int _vm = -1, _kvmVfio = -1;

    /// <inheritdoc/>
    public override void Attach(LabEnvironment env)
    {
        SimProcess p = env.Process;

        // The group first, in a container with an IOMMU driver: the old API required it.
        _container = new VfioContainerFd(p);
        _group = new VfioGroupFd(p, env.Sim.GroupOf(env.Device!));
        _group.SetContainer(_container);
        _container.SetIommu(VfioExtension.Type1v2);

        // The VM and its KVM-VFIO device.
        int kvm = p.Open("/dev/kvm");
        _vm = (int)p.Ioctl(kvm, KvmIoctl.CreateVm);
        p.Close(kvm);
        var cd = new KvmCreateDevice { Type = (uint)KvmDeviceType.Vfio };
        p.Ioctl(_vm, KvmIoctl.CreateDevice, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cd, 1)));
        _kvmVfio = (int)cd.Fd;

        // KVM reads the group fd from user memory at attr.addr.
        _arg = VfioSim.Allocate(p, 4096);
        _arg.Write(0, BitConverter.GetBytes(_group.Fd));
        Check(SetAttr(p, KvmDevVfio.FileAdd), "KVM_DEV_VFIO_FILE_ADD");

        // Opened after the ADD, the device takes a reference to the VM (as QEMU does it).
        _device = _group.GetDeviceFd(env.Device!);
    }

    /// <inheritdoc/>
    public override void Detach(LabEnvironment env)
    {
        SimProcess p = env.Process;
        _device!.Dispose();
        Check(SetAttr(p, KvmDevVfio.FileDel), "KVM_DEV_VFIO_FILE_DEL");
        p.Close(_kvmVfio);
        p.Close(_vm);
        _group!.UnsetContainer();
        _group.Dispose();
        _container!.Dispose();
        _arg!.Dispose();
    }

    private long SetAttr(SimProcess p, ulong attr)
    {
        var a = new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = attr, Addr = _arg!.Address };
        return p.Ioctl(_kvmVfio, KvmIoctl.SetDeviceAttr, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref a, 1)));
    }

    private static void Check(long ret, string what)
    {
        if (ret < 0)
        {
            throw new InvalidOperationException($"{what} failed: {ErrnoExtensions.FromReturn(ret).Describe()}");
        }
    }
}
