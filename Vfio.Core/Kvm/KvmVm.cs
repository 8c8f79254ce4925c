// Models struct kvm and the VM and device files of virt/kvm/kvm_main.c (v6.12):
// users_count (kvm_get_kvm, kvm_get_kvm_safe, kvm_put_kvm, kvm_destroy_vm), the VM fd
// (KVM_CREATE_DEVICE, KVM_CHECK_EXTENSION), kvm_ioctl_create_device, and the device fd
// (KVM_SET/GET/HAS_DEVICE_ATTR, kvm_device_release), plus the x86 counters VFIO drives
// (kvm_arch_start/end_assignment, kvm_arch_register/unregister_noncoherent_dma).
//
// Life cycle: users_count starts at 1 for the VM fd; every device fd holds one more, and
// so does every vfio device opened while its group is associated with the VM. The last
// put destroys the VM. Devices with a release op (kvm-vfio) are released when their fd
// closes, under kvm->lock, so VM destruction never calls back into VFIO. Locks: kvm->lock
// protects the device list; it is taken before a device's own lock (kvm_vfio.lock).

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Core.Kvm;

/// <summary>struct kvm: a VM, as drivers that were handed one (vfio devices) see it.</summary>
public sealed class KvmVm : IVfioKvm
{
    /// <summary>The fault site of struct kvm_device's allocation.</summary>
    internal const string DeviceAllocFaultSite = "kzalloc:kvm_device";

    private readonly RefCount _users;
    private readonly List<KvmDevice> _devices = [];
    private int _assignedDevices;
    private int _noncoherentDma;
    private volatile bool _destroyed;

    internal KvmVm(Kvm kvm, MmStruct mm, int id)
    {
        Module = kvm;
        Mm = mm;
        Id = id;
        _users = new RefCount(kvm.Kernel, $"kvm[{id}].users_count", 1);
        Lock = new KMutex(kvm.Kernel, $"kvm[{id}].lock", Kvm.VmLockClass);
    }

    /// <summary>The KVM module.</summary>
    public Kvm Module { get; }

    /// <summary>A machine-wide number for names.</summary>
    public int Id { get; }

    /// <summary>kvm-&gt;mm: only the creating process may issue VM and device ioctls.</summary>
    internal MmStruct Mm { get; }

    /// <summary>kvm-&gt;lock: protects the device list.</summary>
    internal KMutex Lock { get; }

    /// <summary>users_count, for tests and leak checks.</summary>
    internal int UsersCount => _users.Value;

    /// <summary>True once kvm_destroy_vm() ran.</summary>
    public bool IsDestroyed => _destroyed;

    /// <summary>The task that dropped the last reference, for tests and traces.</summary>
    internal string? DestroyedBy { get; private set; }

    /// <summary>kvm-&gt;arch.assigned_device_count: files the KVM-VFIO device holds.</summary>
    internal int AssignedDeviceCount => Volatile.Read(ref _assignedDevices);

    /// <summary>kvm-&gt;arch.noncoherent_dma_count: KVM-VFIO devices that saw a file without enforced coherency.</summary>
    internal int NoncoherentDmaCount => Volatile.Read(ref _noncoherentDma);

    /// <summary>The devices (caller holds <see cref="Lock"/>).</summary>
    internal IReadOnlyList<KvmDevice> DevicesLocked
    {
        get
        {
            Lock.AssertHeld();
            return _devices;
        }
    }

    /// <summary>kvm_get_kvm_safe(): a reference unless the VM is already being destroyed.</summary>
    public bool TryGet() => _users.IncNotZero();

    /// <summary>kvm_put_kvm(): the last reference destroys the VM.</summary>
    public void Put()
    {
        if (_users.DecAndTest())
        {
            Destroy();
        }
    }

    /// <summary>kvm_get_kvm(): the caller already holds a reference.</summary>
    internal void Get() => _users.Inc();

    /// <summary>kvm_put_kvm_no_destroy(): drops a reference that cannot be the last.</summary>
    internal void PutNoDestroy() => Warn.On(Module.Kernel, _users.DecAndTest(), $"{this}: kvm_put_kvm_no_destroy dropped the last reference");

    internal void StartAssignment() => Interlocked.Increment(ref _assignedDevices);

    internal void EndAssignment() => Warn.On(Module.Kernel, Interlocked.Decrement(ref _assignedDevices) < 0, $"{this}: assigned_device_count went negative");

    internal void RegisterNoncoherentDma() => Interlocked.Increment(ref _noncoherentDma);

    internal void UnregisterNoncoherentDma() => Warn.On(Module.Kernel, Interlocked.Decrement(ref _noncoherentDma) < 0, $"{this}: noncoherent_dma_count went negative");

    /// <summary>kvm_destroy_vm(): nobody else holds the VM, so no lock is needed for its own state.</summary>
    private void Destroy()
    {
        Module.RemoveVm(this);

        // kvm_destroy_devices() runs ->destroy for what is still listed; devices with a
        // release op left the list when their fd closed, and each fd held a reference.
        List<SimFile> deferred = [];
        for (int i = _devices.Count - 1; i >= 0; i--)
        {
            if (!_devices[i].ReleasesAtFdClose)
            {
                _devices[i].Destroy(deferred);
                _devices.RemoveAt(i);
            }
        }

        foreach (SimFile f in deferred)
        {
            f.Put();
        }

        Warn.On(Module.Kernel, _devices.Count != 0, $"{this}: destroyed with {_devices.Count} device(s) still listed");
        Warn.On(Module.Kernel, AssignedDeviceCount != 0 || NoncoherentDmaCount != 0, $"{this}: destroyed with assigned_device_count {AssignedDeviceCount}, noncoherent_dma_count {NoncoherentDmaCount}");
        DestroyedBy = KTask.CurrentOrNull?.Comm;
        _destroyed = true;
        Module.Kernel.Trace.Event(KTask.CurrentOrNull, "kvm_destroy_vm", ToString());
    }

    /// <summary>The check at the top of kvm_vm_ioctl() and kvm_device_ioctl(): another process's VM is EIO.</summary>
    internal int CheckCaller(uint cmd)
    {
        if (SimProcess.Current?.Mm != Mm)
        {
            return ErrorReason.Fail(Errno.EIO, $"{KvmIoctl.Name(cmd)}: {this} belongs to another process (kvm->mm != current->mm)");
        }

        return 0;
    }

    /// <summary>kvm_vm_ioctl().</summary>
    internal long Ioctl(uint cmd, ulong arg)
    {
        int err = CheckCaller(cmd);
        if (err != 0)
        {
            return err;
        }

        switch (cmd)
        {
            case KvmIoctl.CreateDevice:
                return CreateDeviceIoctl(arg);
            case KvmIoctl.CheckExtension:
                return Kvm.CheckExtension(arg);
            default:
                // kvm_arch_vm_ioctl() on x86 answers unknown VM ioctls with ENOTTY.
                return ErrorReason.Fail(Errno.ENOTTY, $"{KvmIoctl.Name(cmd)}: not a VM ioctl");
        }
    }

    private long CreateDeviceIoctl(ulong arg)
    {
        const string Name = "KVM_CREATE_DEVICE";
        if (UserMemory.Get(arg, out KvmCreateDevice cd) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{Name}: cannot read struct kvm_create_device at 0x{arg:x}");
        }

        int ret = CreateDevice(ref cd);
        if (ret != 0)
        {
            return ret;
        }

        // On a failed copy back the new fd stays installed, as in the kernel.
        return UserMemory.Put(arg, cd) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{Name}: cannot write struct kvm_create_device back to 0x{arg:x}")
            : 0;
    }

    /// <summary>kvm_ioctl_create_device().</summary>
    private int CreateDevice(ref KvmCreateDevice cd)
    {
        const string Name = "KVM_CREATE_DEVICE";
        if (cd.Type >= Kvm.DeviceTypeMax || (KvmDeviceType)cd.Type != KvmDeviceType.Vfio)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{Name}: device type {cd.Type} is not registered (only KVM_DEV_TYPE_VFIO = {(uint)KvmDeviceType.Vfio})");
        }

        if ((cd.Flags & KvmIoctl.CreateDeviceTest) != 0)
        {
            return 0;
        }

        if (Module.Kernel.Faults.ShouldFail(DeviceAllocFaultSite))
        {
            return ErrorReason.Fail(Errno.ENOMEM, $"{Name}: cannot allocate the device");
        }

        KvmDevice dev = new KvmVfio(this);
        Lock.Lock();
        try
        {
            int err = dev.Create();
            if (err != 0)
            {
                return err;
            }

            _devices.Add(dev);
        }
        finally
        {
            Lock.Unlock();
        }

        // anon_inode_getfd(): the fd holds a VM reference from here on.
        Get();
        SimProcess proc = SimProcess.Current!;
        int fd = proc.GetUnusedFd(cloexec: true);
        if (fd < 0)
        {
            PutNoDestroy();
            List<SimFile> deferred = UnlistAndRelease(dev);
            Warn.On(Module.Kernel, deferred.Count != 0, $"{Name}: a new {dev.Name} device held files");
            return ErrorReason.Fail(ErrnoExtensions.FromReturn(fd), $"{Name}: no free fd for the {dev.Name} device");
        }

        proc.FdInstall(fd, AnonInodes.GetFile(Module.Kernel, dev.Name, Module.DeviceFops, dev, OpenFlags.O_RDWR));
        cd.Fd = (uint)fd;
        Module.Kernel.Trace.Event(KTask.CurrentOrNull, "kvm_create_device", ToString(), $"{dev.Name} fd {fd}");
        return 0;
    }

    /// <summary>kvm_device_release(): the device fd's last reference.</summary>
    internal void ReleaseDevice(KvmDevice dev)
    {
        if (!dev.ReleasesAtFdClose)
        {
            // A device with only ->destroy stays listed; the fd's reference goes.
            Put();
            return;
        }

        // fput() is deferred to task work in the kernel, so a file the device held is not
        // released under kvm->lock; here the puts run after the lock is dropped.
        List<SimFile> deferred = UnlistAndRelease(dev);
        Put();
        foreach (SimFile f in deferred)
        {
            f.Put();
        }
    }

    /// <summary>list_del_rcu(&amp;dev-&gt;vm_node) and -&gt;release() under kvm-&gt;lock: the files to fput once it is dropped.</summary>
    private List<SimFile> UnlistAndRelease(KvmDevice dev)
    {
        List<SimFile> deferred = [];
        Lock.Lock();
        try
        {
            _devices.Remove(dev);
            dev.Release(deferred);
        }
        finally
        {
            Lock.Unlock();
        }

        return deferred;
    }

    /// <inheritdoc/>
    public override string ToString() => $"kvm {Id}";
}

/// <summary>The optional attribute accessors of kvm_device_ops.</summary>
[Flags]
internal enum KvmAttrOps
{
    None = 0,
    Set = 1,
    Get = 2,
    Has = 4,
}

/// <summary>struct kvm_device with its kvm_device_ops.</summary>
internal abstract class KvmDevice(KvmVm vm)
{
    /// <summary>dev-&gt;kvm.</summary>
    public KvmVm Vm { get; } = vm;

    /// <summary>ops-&gt;name: also the anon inode's name.</summary>
    public abstract string Name { get; }

    /// <summary>-&gt;create() (caller holds kvm-&gt;lock): 0 or -errno.</summary>
    public abstract int Create();

    /// <summary>-&gt;release() (caller holds kvm-&gt;lock): files to fput once the lock is dropped go to <paramref name="deferredPuts"/>.</summary>
    public abstract void Release(List<SimFile> deferredPuts);

    /// <summary>
    /// True when the device has a -&gt;release op (it leaves the VM's list when its fd closes);
    /// false when only -&gt;destroy runs, at the VM's destruction.
    /// </summary>
    public virtual bool ReleasesAtFdClose => true;

    /// <summary>-&gt;destroy() at kvm_destroy_vm() for a device still listed: files to fput go to <paramref name="deferredPuts"/>.</summary>
    public virtual void Destroy(List<SimFile> deferredPuts) => throw new InvalidOperationException($"{Name} has no destroy op");

    /// <summary>Which of set_attr / get_attr / has_attr the device implements (the non-NULL ops).</summary>
    public abstract KvmAttrOps Provides { get; }

    // kvm_device_ioctl_attr() answers EPERM for an accessor missing from Provides before it
    // reads the argument, so these are only called when the device listed them.

    /// <summary>-&gt;set_attr(): 0 or -errno.</summary>
    public virtual int SetAttr(in KvmDeviceAttr attr) => throw NotProvided(KvmAttrOps.Set);

    /// <summary>-&gt;get_attr(): 0 or -errno.</summary>
    public virtual int GetAttr(in KvmDeviceAttr attr) => throw NotProvided(KvmAttrOps.Get);

    /// <summary>-&gt;has_attr(): 0 or -errno.</summary>
    public virtual int HasAttr(in KvmDeviceAttr attr) => throw NotProvided(KvmAttrOps.Has);

    private InvalidOperationException NotProvided(KvmAttrOps op) => new($"{Name}: Provides lists {op} but the device does not override it");

    /// <inheritdoc/>
    public override string ToString() => $"{Name} of {Vm}";
}

/// <summary>kvm_vm_fops.</summary>
internal sealed class KvmVmFops : FileOperations
{
    /// <summary>kvm_vm_release(): the VM fd's reference goes.</summary>
    public override void Release(SimFile file) => ((KvmVm)file.PrivateData!).Put();

    public override long Ioctl(SimFile file, uint cmd, ulong arg) => ((KvmVm)file.PrivateData!).Ioctl(cmd, arg);
}

/// <summary>kvm_device_fops.</summary>
internal sealed class KvmDeviceFops : FileOperations
{
    public override void Release(SimFile file)
    {
        var dev = (KvmDevice)file.PrivateData!;
        dev.Vm.ReleaseDevice(dev);
    }

    /// <summary>kvm_device_ioctl().</summary>
    public override long Ioctl(SimFile file, uint cmd, ulong arg)
    {
        var dev = (KvmDevice)file.PrivateData!;
        int err = dev.Vm.CheckCaller(cmd);
        if (err != 0)
        {
            return err;
        }

        if (cmd is not (KvmIoctl.SetDeviceAttr or KvmIoctl.GetDeviceAttr or KvmIoctl.HasDeviceAttr))
        {
            return ErrorReason.Fail(Errno.ENOTTY, $"{KvmIoctl.Name(cmd)}: {dev.Name} has no such ioctl");
        }

        // kvm_device_ioctl_attr(): a missing accessor is EPERM before the argument is read.
        KvmAttrOps op = cmd switch
        {
            KvmIoctl.SetDeviceAttr => KvmAttrOps.Set,
            KvmIoctl.GetDeviceAttr => KvmAttrOps.Get,
            _ => KvmAttrOps.Has,
        };
        if ((dev.Provides & op) == 0)
        {
            return ErrorReason.Fail(Errno.EPERM, $"{KvmIoctl.Name(cmd)}: {dev.Name} does not implement it");
        }

        if (UserMemory.Get(arg, out KvmDeviceAttr attr) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{KvmIoctl.Name(cmd)}: cannot read struct kvm_device_attr at 0x{arg:x}");
        }

        return op switch
        {
            KvmAttrOps.Set => dev.SetAttr(attr),
            KvmAttrOps.Get => dev.GetAttr(attr),
            _ => dev.HasAttr(attr),
        };
    }
}
