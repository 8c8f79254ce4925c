// Models the system-wide part of virt/kvm/kvm_main.c (v6.12) that VFIO meets: the
// /dev/kvm misc device (KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM), the
// device-ops table (only KVM_DEV_TYPE_VFIO is registered) and the VM list. No vCPUs, no
// memory slots: just enough KVM for a VMM to hand vfio group files to a VM.
//
// Lock order: kvm_lock (the VM list) is a leaf taken by VM creation and destruction;
// destruction can run under vfio locks (a device's last close drops its VM reference).

using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Core.Kvm;

/// <summary>KVM loaded on one machine (the kvm module with kvm-vfio).</summary>
public sealed class Kvm
{
    /// <summary>KVM_MINOR: /dev/kvm's misc minor.</summary>
    public const int Minor = 232;

    /// <summary>KVM_DEV_TYPE_MAX: the size of the device-ops table.</summary>
    internal const uint DeviceTypeMax = 12;

    /// <summary>The fault site of struct kvm's allocation.</summary>
    internal const string VmAllocFaultSite = "kzalloc:kvm";

    internal static readonly LockClass KvmLockClass = LockClass.Get("kvm_lock");
    internal static readonly LockClass VmLockClass = LockClass.Get("kvm.lock");
    internal static readonly LockClass VfioLockClass = LockClass.Get("kvm_vfio.lock");

    // Protects _vms (vm_list) and _nextVmId.
    private readonly KMutex _lock;
    private readonly List<KvmVm> _vms = [];
    private int _nextVmId;

    private Kvm(SimMachine machine)
    {
        Machine = machine;
        Kernel = machine.Kernel;
        _lock = new KMutex(Kernel, "kvm_lock", KvmLockClass);
        DevFops = new KvmDevFops(this);
        VmFops = new KvmVmFops();
        DeviceFops = new KvmDeviceFops();
    }

    /// <summary>The machine.</summary>
    public SimMachine Machine { get; }

    /// <summary>The simulated kernel.</summary>
    public SimKernel Kernel { get; }

    internal KvmDevFops DevFops { get; }

    internal KvmVmFops VmFops { get; }

    internal KvmDeviceFops DeviceFops { get; }

    /// <summary>The live VMs (vm_list), a snapshot.</summary>
    public IReadOnlyList<KvmVm> Vms
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _vms];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>
    /// Loads KVM on <paramref name="machine"/>: registers /dev/kvm (misc minor 232) and the
    /// kvm-vfio device type. Loading twice is a programming error.
    /// </summary>
    public static Kvm Load(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var kvm = new Kvm(machine);
        if (!machine.AddModule(kvm))
        {
            throw new InvalidOperationException("kvm is already loaded on this machine");
        }

        int err = machine.CharDevices.RegisterMisc(Minor, "kvm", kvm.DevFops, 0x1b6 /* 0666 */);
        if (err != 0)
        {
            throw new InvalidOperationException($"kvm: cannot register /dev/kvm: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        return kvm;
    }

    /// <summary>The KVM of <paramref name="machine"/>; throws when it is not loaded.</summary>
    public static Kvm Of(SimMachine machine)
        => machine.GetModule<Kvm>() ?? throw new InvalidOperationException("kvm is not loaded on this machine: call Kvm.Load(machine) first");

    /// <summary>kvm_dev_ioctl_create_vm(): the fd of a new VM, or -errno.</summary>
    internal long CreateVm(ulong type)
    {
        const string Name = "KVM_CREATE_VM";
        SimProcess proc = SimProcess.Current ?? throw new InvalidOperationException($"{Name} needs a process context");
        int fd = proc.GetUnusedFd(cloexec: true);
        if (fd < 0)
        {
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(fd), $"{Name}: no free fd");
        }

        // kvm_create_vm() allocates the VM (kvm_arch_alloc_vm) before kvm_arch_init_vm()
        // looks at the type, so a failed allocation is ENOMEM whatever the type.
        if (Kernel.Faults.ShouldFail(VmAllocFaultSite))
        {
            proc.PutUnusedFd(fd);
            return ErrorReason.Fail(Errno.ENOMEM, $"{Name}: cannot allocate the VM");
        }

        // kvm_arch_init_vm() on x86: only the types the host supports; here the default one.
        if (type != 0)
        {
            proc.PutUnusedFd(fd);
            return ErrorReason.Fail(Errno.EINVAL, $"{Name}: machine type {type} is not supported (only KVM_X86_DEFAULT_VM = 0)");
        }

        _lock.Lock();
        KvmVm vm;
        try
        {
            vm = new KvmVm(this, proc.Mm, _nextVmId++);
            _vms.Add(vm);
        }
        finally
        {
            _lock.Unlock();
        }

        SimFile file = AnonInodes.GetFile(Kernel, "kvm-vm", VmFops, vm, OpenFlags.O_RDWR);
        proc.FdInstall(fd, file);
        Kernel.Trace.Event(KTask.CurrentOrNull, "kvm_create_vm", vm.ToString(), $"fd {fd}");
        return fd;
    }

    /// <summary>The VM's part of kvm_destroy_vm() that touches the module: it leaves vm_list.</summary>
    internal void RemoveVm(KvmVm vm)
    {
        _lock.Lock();
        try
        {
            _vms.Remove(vm);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>kvm_vm_ioctl_check_extension_generic(): only what this KVM has.</summary>
    internal static long CheckExtension(ulong cap) => cap == KvmIoctl.CapDeviceCtrl ? 1 : 0;
}

/// <summary>kvm_chardev_ops: /dev/kvm.</summary>
internal sealed class KvmDevFops(Kvm kvm) : FileOperations
{
    public override long Ioctl(SimFile file, uint cmd, ulong arg)
    {
        switch (cmd)
        {
            case KvmIoctl.GetApiVersion:
                return arg != 0
                    ? ErrorReason.Fail(Errno.EINVAL, $"KVM_GET_API_VERSION: the argument must be 0, not {arg}")
                    : KvmIoctl.ApiVersion;
            case KvmIoctl.CreateVm:
                return kvm.CreateVm(arg);
            case KvmIoctl.CheckExtension:
                return Kvm.CheckExtension(arg);
            default:
                // kvm_arch_dev_ioctl() on x86 answers unknown system ioctls with EINVAL.
                return ErrorReason.Fail(Errno.EINVAL, $"{KvmIoctl.Name(cmd)}: not a /dev/kvm ioctl");
        }
    }
}
