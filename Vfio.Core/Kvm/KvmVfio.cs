// Models virt/kvm/vfio.c (v6.12): the KVM-VFIO pseudo device (KVM_DEV_TYPE_VFIO). User
// space hands it vfio files with KVM_DEV_VFIO_FILE_ADD/DEL; it holds a file reference for
// each, associates the file with the VM (vfio_file_set_kvm, so devices opened later take
// a VM reference), counts an assignment, and registers non-coherent DMA with the VM while
// any file lacks enforced cache coherency. The ≤v5.18 design (VfioExternalUsers.Checked
// and .Unchecked) takes the group as an external user instead of holding the file.
//
// Locks: kvm->lock (create, release) → kvm_vfio.lock (the file list and the coherency
// flag) → vfio_group.kvm_ref_lock (vfio_file_set_kvm), or → vfio_group.group_lock for the
// legacy external-user calls and for the pre-v6.3 orders of VfioDesign.KvmLocking (race 7:
// GroupLockAtKvmVfioRelease takes the group lock under kvm->lock; GroupLockAtVmDestroy lets
// go of the files from ->destroy when the VM goes, in whichever task drops the last
// reference). Files are fput only after kvm_vfio.lock (and kvm->lock) are
// dropped, as the kernel's deferred fput would.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Core.Kvm;

/// <summary>struct kvm_vfio: the one KVM-VFIO device of a VM.</summary>
internal sealed class KvmVfio : KvmDevice
{
    private const string AddName = "KVM_DEV_VFIO_FILE_ADD";
    private const string DelName = "KVM_DEV_VFIO_FILE_DEL";

    /// <summary>The fault site of a list entry (struct kvm_vfio_file).</summary>
    internal const string FileAllocFaultSite = "kzalloc:kvm_vfio_file";

    /// <summary>The fault site of a ≤v5.18 list entry (struct kvm_vfio_group).</summary>
    internal const string GroupAllocFaultSite = "kzalloc:kvm_vfio_group";

    // Protects _files and _noncoherent (kv->lock).
    private readonly KMutex _lock;
    private readonly List<Entry> _files = [];
    private readonly bool _legacy;
    private bool _noncoherent;

    public KvmVfio(KvmVm vm)
        : base(vm)
    {
        _lock = new KMutex(vm.Module.Kernel, $"kvm[{vm.Id}].kvm_vfio.lock", Kvm.VfioLockClass);

        // Without vfio loaded every file is "not a vfio file" (the kernel's symbol_get fails).
        VfioCore? core = vm.Module.Machine.GetModule<VfioCore>();
        _legacy = core is not null && core.Design.ExternalUsers != VfioExternalUsers.FileApi;

        // Before 51cdc8bc120e the files were let go of by ->destroy, when the VM went.
        ReleasesAtFdClose = core is null || core.Design.KvmLocking != VfioKvmLocking.GroupLockAtVmDestroy;
    }

    /// <inheritdoc/>
    public override bool ReleasesAtFdClose { get; }

    public override string Name => "kvm-vfio";

    public override KvmAttrOps Provides => KvmAttrOps.Set | KvmAttrOps.Has;

    /// <summary>The number of files (or legacy groups) on the list, for tests.</summary>
    internal int FileCount
    {
        get
        {
            _lock.Lock();
            try
            {
                return _files.Count;
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }

    /// <summary>kvm_vfio_create(): one KVM-VFIO device per VM.</summary>
    public override int Create()
    {
        Vm.Lock.AssertHeld();
        foreach (KvmDevice d in Vm.DevicesLocked)
        {
            if (d is KvmVfio)
            {
                return ErrorReason.Fail(Errno.EBUSY, $"KVM_CREATE_DEVICE: {Vm} already has a kvm-vfio device");
            }
        }

        return 0;
    }

    /// <summary>kvm_vfio_set_attr().</summary>
    public override int SetAttr(in KvmDeviceAttr attr)
    {
        if (attr.Group != KvmDevVfio.File)
        {
            return ErrorReason.Fail(Errno.ENXIO, $"KVM_SET_DEVICE_ATTR: kvm-vfio has no attribute group {attr.Group}");
        }

        switch (attr.Attr)
        {
            case KvmDevVfio.FileAdd:
            case KvmDevVfio.FileDel:
                bool add = attr.Attr == KvmDevVfio.FileAdd;
                string name = add ? AddName : DelName;
                if (UserMemory.Get(attr.Addr, out int fd) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot read the fd at 0x{attr.Addr:x}");
                }

                // fget()/fdget(): the file stays referenced for the call, and this reference
                // goes only once kv->lock is dropped.
                SimFile? f = SimProcess.Current!.Files.Get(fd);
                if (f is null)
                {
                    return ErrorReason.Fail(Errno.EBADF, $"{name}: fd {fd} is not open");
                }

                try
                {
                    return (add, _legacy) switch
                    {
                        (true, false) => FileAdd(f, fd),
                        (false, false) => FileDel(f, fd),
                        (true, true) => LegacyAdd(f),
                        (false, true) => LegacyDel(f, fd),
                    };
                }
                finally
                {
                    f.Put();
                }

            case KvmDevVfio.GroupSetSpaprTce:
                return ErrorReason.Fail(Errno.ENXIO, "KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE: only SPAPR (POWER) hosts have TCE tables");
            default:
                return ErrorReason.Fail(Errno.ENXIO, $"KVM_SET_DEVICE_ATTR: kvm-vfio has no attribute {attr.Attr} in KVM_DEV_VFIO_FILE");
        }
    }

    /// <summary>kvm_vfio_has_attr().</summary>
    public override int HasAttr(in KvmDeviceAttr attr)
        => attr.Group == KvmDevVfio.File && attr.Attr is KvmDevVfio.FileAdd or KvmDevVfio.FileDel
            ? 0
            : ErrorReason.Fail(Errno.ENXIO, $"KVM_HAS_DEVICE_ATTR: kvm-vfio has no attribute {attr.Attr} in group {attr.Group}");

    /// <summary>kvm_vfio_file_add(): the list takes its own reference to <paramref name="f"/>.</summary>
    private int FileAdd(SimFile f, int fd)
    {
        if (!VfioFile.IsValid(f))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{AddName}: fd {fd} ({f.Path}) is neither a vfio group nor a vfio device file");
        }

        _lock.Lock();
        try
        {
            if (IndexOfLocked(f) >= 0)
            {
                return ErrorReason.Fail(Errno.EEXIST, $"{AddName}: fd {fd} ({f.Path}) is already on {Vm}'s kvm-vfio device");
            }

            if (Vm.Module.Kernel.Faults.ShouldFail(FileAllocFaultSite))
            {
                return ErrorReason.Fail(Errno.ENOMEM, $"{AddName}: cannot allocate the list entry");
            }

            f.Get();
            _files.Add(new Entry(f, null));
            Vm.StartAssignment();
            VfioFile.SetKvm(f, Vm);
            UpdateCoherencyLocked();
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>kvm_vfio_file_del(): the list's reference to <paramref name="f"/> goes once kv-&gt;lock is dropped.</summary>
    private int FileDel(SimFile f, int fd)
    {
        bool found;
        _lock.Lock();
        try
        {
            int i = IndexOfLocked(f);
            found = i >= 0;
            if (found)
            {
                _files.RemoveAt(i);
                Vm.EndAssignment();
                VfioFile.SetKvm(f, null);
            }

            UpdateCoherencyLocked();
        }
        finally
        {
            _lock.Unlock();
        }

        if (!found)
        {
            return ErrorReason.Fail(Errno.ENOENT, $"{DelName}: fd {fd} ({f.Path}) is not on {Vm}'s kvm-vfio device");
        }

        f.Put();
        return 0;
    }

    /// <summary>The ≤v5.18 KVM_DEV_VFIO_GROUP_ADD: the group is taken as an external user.</summary>
    private int LegacyAdd(SimFile f)
    {
        int err = VfioFile.GetExternalUser(f, out VfioGroup? group);
        if (err != 0)
        {
            return err;
        }

        _lock.Lock();
        try
        {
            if (IndexOfLocked(group!) >= 0)
            {
                VfioFile.PutExternalUser(group!);
                return ErrorReason.Fail(Errno.EEXIST, $"{AddName}: group {group!.Name} is already on {Vm}'s kvm-vfio device");
            }

            if (Vm.Module.Kernel.Faults.ShouldFail(GroupAllocFaultSite))
            {
                VfioFile.PutExternalUser(group!);
                return ErrorReason.Fail(Errno.ENOMEM, $"{AddName}: cannot allocate the list entry");
            }

            _files.Add(new Entry(null, group));
            Vm.StartAssignment();
            VfioFile.GroupSetKvm(group!, Vm);
            UpdateCoherencyLocked();
            return 0;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>The ≤v5.18 KVM_DEV_VFIO_GROUP_DEL: matched by group (vfio_external_group_match_file).</summary>
    private int LegacyDel(SimFile f, int fd)
    {
        VfioGroup? group = VfioFile.GroupOf(f);
        bool found = false;
        _lock.Lock();
        try
        {
            int i = group is null ? -1 : IndexOfLocked(group);
            if (i >= 0)
            {
                _files.RemoveAt(i);
                Vm.EndAssignment();
                VfioFile.GroupSetKvm(group!, null);
                VfioFile.PutExternalUser(group!);
                found = true;
            }

            UpdateCoherencyLocked();
        }
        finally
        {
            _lock.Unlock();
        }

        return found ? 0 : ErrorReason.Fail(Errno.ENOENT, $"{DelName}: fd {fd} ({f.Path}) is not a group on {Vm}'s kvm-vfio device");
    }

    /// <summary>kvm_vfio_release(): the device fd closed (caller holds kvm-&gt;lock).</summary>
    public override void Release(List<SimFile> deferredPuts)
    {
        Vm.Lock.AssertHeld();
        LetGoOfFiles(deferredPuts);
    }

    /// <summary>The ≤ v6.2-rc5 kvm_vfio_destroy(): the VM is being destroyed (no lock held; nobody else has the VM).</summary>
    public override void Destroy(List<SimFile> deferredPuts) => LetGoOfFiles(deferredPuts);

    private void LetGoOfFiles(List<SimFile> deferredPuts)
    {
        _lock.Lock();
        try
        {
            foreach (Entry e in _files)
            {
                if (e.File is { } file)
                {
                    VfioFile.SetKvm(file, null);
                    deferredPuts.Add(file);
                }
                else
                {
                    VfioFile.GroupSetKvm(e.Group!, null);
                    VfioFile.PutExternalUser(e.Group!);
                }

                Vm.EndAssignment();
            }

            _files.Clear();
            UpdateCoherencyLocked();
        }
        finally
        {
            _lock.Unlock();
        }
    }

    // An entry holds a file or (≤v5.18) a group, never both: equality on the whole entry finds either.
    private int IndexOfLocked(SimFile file)
    {
        _lock.AssertHeld();
        return _files.IndexOf(new Entry(file, null));
    }

    private int IndexOfLocked(VfioGroup group)
    {
        _lock.AssertHeld();
        return _files.IndexOf(new Entry(null, group));
    }

    /// <summary>
    /// kvm_vfio_update_coherency(): the VM is told once per device, when the first file
    /// without enforced coherency arrives and when the last one leaves.
    /// </summary>
    private void UpdateCoherencyLocked()
    {
        _lock.AssertHeld();
        bool noncoherent = false;
        foreach (Entry e in _files)
        {
            if (!(e.File is { } f ? VfioFile.EnforcedCoherent(f) : LegacyCoherent(e.Group!)))
            {
                noncoherent = true;
                break;
            }
        }

        if (noncoherent == _noncoherent)
        {
            return;
        }

        _noncoherent = noncoherent;
        if (noncoherent)
        {
            Vm.RegisterNoncoherentDma();
        }
        else
        {
            Vm.UnregisterNoncoherentDma();
        }
    }

    /// <summary>≤v5.18: vfio_external_check_extension(group, VFIO_DMA_CC_IOMMU) &gt; 0.</summary>
    private static bool LegacyCoherent(VfioGroup group) => VfioFile.ExternalCheckExtension(group, VfioExtension.DmaCcIommu) > 0;

    /// <summary>struct kvm_vfio_file (a file), or the ≤v5.18 struct kvm_vfio_group (an external-user group).</summary>
    private readonly record struct Entry(SimFile? File, VfioGroup? Group);

    /// <summary>The vfio files (or, before v5.19, groups) the device holds, read without kv->lock: only when no task runs (the object graph's snapshot).</summary>
    internal IReadOnlyList<(SimFile? File, VfioGroup? Group)> FilesUnlocked
    {
        get
        {
            var list = new List<(SimFile?, VfioGroup?)>(_files.Count);
            foreach (Entry e in _files)
            {
                list.Add((e.File, e.Group));
            }

            return list;
        }
    }
}
