// Models the SR-IOV side of drivers/vfio/pci/vfio_pci_core.c (v6.12; the same in v6.1):
// the VF token (vfio_pci_vf_init/uninit, vfio_pci_validate_vf_token, the vf_token= option
// of vfio_pci_core_match, the token's user count kept at open and close of the PF's VFs,
// VFIO_DEVICE_FEATURE_PCI_VF_TOKEN), the PCI bus notifier that points a vfio-pci PF's new
// VFs at vfio-pci, and vfio_pci_core_sriov_configure.
//
// Trust: a VF whose PF is bound to vfio-pci opens only with the PF's token (a UUID, random
// per PF at probe, from the kernel's seeded generator). A PF whose VFs are open opens only
// with the current token; a PF without VF users takes the token given, which becomes the
// token. The token outlives the PF's user: it belongs to the PF's registration.
//
// Lock rules (order left to right):
//   PF device_lock → vfio_pci_sriov_pfs_mutex (VfioPciDriver.SriovPfs) — held only to
//     check/insert/remove the PF on the list, never across pci_enable_sriov.
//   PF device_lock → memory_lock (write) → pci_enable_sriov → VF device_lock → VF probe.
//   dev_set->lock → vf_token->lock (a VF's open and close count its PF's token users).
//   vf_token->lock is a leaf: it protects the token's UUID and user count only.

using System.Buffers.Binary;
using System.Globalization;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

/// <summary>struct vfio_pci_vf_token: the UUID a PF's VF users must present, and how many of the PF's VFs are open.</summary>
internal sealed class VfioPciVfToken
{
    private static readonly LockClass s_class = LockClass.Get("vfio_pci_vf_token.lock");

    public VfioPciVfToken(SimKernel kernel, string pf, UInt128 uuid)
    {
        Lock = new KMutex(kernel, $"vfio-pci[{pf}].vf_token.lock", s_class);
        Uuid = uuid;
    }

    // Protects Uuid and Users.
    public KMutex Lock { get; }

    /// <summary>The token's 16 bytes in the order of its text (uuid_t), as one big-endian number.</summary>
    public UInt128 Uuid { get; set; }

    /// <summary>Open VFs of the PF (vf_token-&gt;users).</summary>
    public int Users { get; set; }
}

/// <summary>vfio_pci_sriov_pfs and its mutex: the PFs vfio_pci_core_sriov_configure has enabled (or is enabling).</summary>
internal sealed class VfioPciSriovPfs(SimKernel kernel)
{
    // Protects List.
    public KMutex Mutex { get; } = new(kernel, "vfio_pci_sriov_pfs_mutex");

    public List<VfioPciCoreDevice> List { get; } = [];
}

public sealed partial class VfioPciCoreDevice
{
    private const string VfTokenArg = "vf_token=";

    // UUID_STRING_LEN.
    private const int UuidStringLen = 36;

    // vdev->vf_token: set at registration of a PF, null otherwise.
    private VfioPciVfToken? _vfToken;

    // vdev->sriov_pf_core_dev: for a VF created by vfio-pci's sriov_configure, the PF.
    private VfioPciCoreDevice? _sriovPfCoreDev;

    // vdev->nb: the PCI bus notifier of a PF.
    private NotifierBlock? _busNotifier;

    /// <summary>True for a PF bound to vfio-pci, which has a VF token.</summary>
    internal bool HasVfToken => _vfToken is not null;

    /// <summary>The PF's token (the test's view; user space cannot read it).</summary>
    internal UInt128? VfTokenForTest
    {
        get
        {
            if (_vfToken is not { } t)
            {
                return null;
            }

            t.Lock.Lock();
            try
            {
                return t.Uuid;
            }
            finally
            {
                t.Lock.Unlock();
            }
        }
    }

    /// <summary>How many of the PF's VFs are open (vf_token-&gt;users); 0 without a token.</summary>
    internal int VfTokenUsers
    {
        get
        {
            if (_vfToken is not { } t)
            {
                return 0;
            }

            t.Lock.Lock();
            try
            {
                return t.Users;
            }
            finally
            {
                t.Lock.Unlock();
            }
        }
    }

    /// <summary>vdev-&gt;sriov_pf_core_dev.</summary>
    internal VfioPciCoreDevice? SriovPfCoreDev => _sriovPfCoreDev;

    private VfioPciSriovPfs SriovPfs => Driver.SriovPfs;

    // ---- Registration.

    /// <summary>
    /// vfio_pci_vf_init(): a VF finds its PF among the PFs vfio-pci enabled (fixed until the
    /// VF's driver goes, by pci_disable_sriov's order); a PF gets a random token and a bus
    /// notifier. 0 or -errno.
    /// </summary>
    private int VfInit()
    {
        if (Pdev.IsVirtfn)
        {
            PciDevice physfn = Pdev.Physfn;
            SriovPfs.Mutex.Lock();
            try
            {
                foreach (VfioPciCoreDevice cur in SriovPfs.List)
                {
                    if (ReferenceEquals(cur.Pdev, physfn))
                    {
                        _sriovPfCoreDev = cur;
                        break;
                    }
                }
            }
            finally
            {
                SriovPfs.Mutex.Unlock();
            }

            return 0;
        }

        if (!Pdev.IsPhysfn)
        {
            return 0;
        }

        _vfToken = new VfioPciVfToken(Core.Kernel, Pname, UuidGen(Core.Kernel.Random));
        _busNotifier = new NotifierBlock((_, action, data) => BusNotifier(action, data));
        int ret = Core.Machine.Pci.Notifier.Register(_busNotifier);
        if (ret != 0)
        {
            _vfToken = null;
            _busNotifier = null;
            return ret;
        }

        return 0;
    }

    /// <summary>vfio_pci_vf_uninit(): a PF drops its bus notifier and token (no VF may still count as a user).</summary>
    private void VfUninit()
    {
        if (_vfToken is not { } token)
        {
            return;
        }

        Core.Machine.Pci.Notifier.Unregister(_busNotifier!);
        token.Lock.Lock();
        Warn.On(Core.Kernel, token.Users != 0, $"vfio-pci {Pname}: VF token still has {token.Users} users at unregister");
        token.Lock.Unlock();
        _vfToken = null;
        _busNotifier = null;
    }

    /// <summary>
    /// vfio_pci_bus_notifier(): a new VF of this PF gets driver_override "vfio-pci" (so it
    /// binds vfio-pci, and only vfio-pci); a VF of this PF bound to another driver is worth a
    /// warning.
    /// </summary>
    private int BusNotifier(ulong action, object? data)
    {
        if (data is not PciDevice pdev || !pdev.IsVirtfn || !ReferenceEquals(pdev.Physfn, Pdev))
        {
            return BlockingNotifierChain.NOTIFY_DONE;
        }

        if (action == (ulong)BusNotification.AddDevice)
        {
            Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Captured SR-IOV VF {pdev.Name} driver_override");
            pdev.DriverOverride = Ops.Name;
        }
        else if (action == (ulong)BusNotification.BoundDriver && pdev.PciDriver is { } drv && !ReferenceEquals(drv, Pdev.PciDriver))
        {
            Core.Kernel.Log.Warn($"{VfioPciDriver.DriverName} {Pname}: VF {pdev.Name} bound to driver {drv.Name} while PF bound to driver {Pdev.PciDriver?.Name}");
        }

        return BlockingNotifierChain.NOTIFY_DONE;
    }

    // ---- The token's users: the PF's VFs open and close.

    /// <summary>The VF half of vfio_pci_core_finish_enable(): one more user of the PF's token.</summary>
    private void VfTokenGetUser()
    {
        if (_sriovPfCoreDev?._vfToken is not { } token)
        {
            return;
        }

        token.Lock.Lock();
        token.Users++;
        token.Lock.Unlock();
    }

    /// <summary>The VF half of vfio_pci_core_close_device(): one user fewer (never below zero).</summary>
    private void VfTokenPutUser()
    {
        if (_sriovPfCoreDev?._vfToken is not { } token)
        {
            return;
        }

        token.Lock.Lock();
        Warn.On(Core.Kernel, token.Users == 0, $"vfio-pci {Pname}: VF token of its PF has no users to drop");
        token.Users--;
        token.Lock.Unlock();
    }

    // ---- sriov_configure.

    /// <summary>True while sriov_configure enables VFs under memory_lock (the VFs probe then).</summary>
    internal bool SriovEnabling { get; private set; }

    /// <summary>
    /// vfio_pci_core_sriov_configure() (called with the PF's device_lock held): enabling puts
    /// the PF on vfio-pci's list of SR-IOV PFs (a second enable without a disable: -EINVAL),
    /// takes the PF to D0 and enables the VFs under memory_lock; it returns the VF count.
    /// Disabling (also on unregister) removes the VFs and takes the PF off the list.
    /// </summary>
    internal int SriovConfigure(int numVfs)
    {
        Pdev.AssertLockHeld();
        int ret = 0;
        if (numVfs != 0)
        {
            SriovPfs.Mutex.Lock();
            if (SriovPfs.List.Contains(this))
            {
                SriovPfs.Mutex.Unlock();
                return ErrorReason.Fail(Errno.EINVAL, $"sriov_configure: vfio-pci enabled SR-IOV on {Pname} already; disable it first");
            }

            SriovPfs.List.Add(this);
            SriovPfs.Mutex.Unlock();

            // The PF must be at least as awake as its VFs: resume it (it may be idle in D3hot)
            // and hold it up while VFs exist.
            ret = Pdev.Power.ResumeAndGet();
            if (ret < 0)
            {
                SriovPfs.Mutex.Lock();
                SriovPfs.List.Remove(this);
                SriovPfs.Mutex.Unlock();
                return ret;
            }

            MemoryLock.DownWrite();
            try
            {
                SetPowerStateD0();
                SriovEnabling = true;
                ret = Pdev.EnableSriov(numVfs);
            }
            finally
            {
                SriovEnabling = false;
                MemoryLock.UpWrite();
            }

            // The idle checks the new VFs' registrations queued (pm_wq) run now, outside the
            // PF's memory_lock: idle VFs on vfio-pci suspend.
            foreach (PciDevice vf in Pdev.VirtualFunctions)
            {
                if (vf.DriverData is VfioPciCoreDevice)
                {
                    vf.Power.Idle();
                }
            }

            if (ret == 0)
            {
                return numVfs;
            }

            Pdev.Power.Put();
        }
        else if (Pdev.NumVfs != 0)
        {
            Pdev.DisableSriov();
            Pdev.Power.Put();
        }

        SriovPfs.Mutex.Lock();
        SriovPfs.List.Remove(this);
        SriovPfs.Mutex.Unlock();
        return ret;
    }

    // ---- The token at GET_DEVICE_FD.

    /// <summary>
    /// vfio_pci_validate_vf_token(): a VF of a vfio-pci PF needs the PF's token (-EACCES when
    /// missing or wrong); a token for a VF whose PF is not vfio-pci is -EINVAL. A PF with
    /// open VFs needs the current token (-EACCES); a PF without VF users takes the token
    /// given. A token for a function that is neither is -EINVAL.
    /// </summary>
    private int ValidateVfToken(bool vfToken, UInt128 uuid)
    {
        const string name = "VFIO_GROUP_GET_DEVICE_FD";
        if (Pdev.IsVirtfn)
        {
            if (_sriovPfCoreDev is not { } pf)
            {
                if (!vfToken)
                {
                    return 0;
                }

                Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: VF token incorrectly provided, PF not bound to vfio-pci");
                return ErrorReason.Fail(Errno.EINVAL, $"{name}: {Pname} is a VF whose PF is not bound to vfio-pci, so it takes no vf_token");
            }

            if (!vfToken)
            {
                Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: VF token required to access device");
                return ErrorReason.Fail(Errno.EACCES, $"{name}: {Pname} is a VF of vfio-pci PF {pf.Pname}; open it as \"{Pname} vf_token=<the PF's token>\"");
            }

            VfioPciVfToken token = pf._vfToken!;
            token.Lock.Lock();
            bool match = token.Uuid == uuid;
            token.Lock.Unlock();
            if (!match)
            {
                Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Incorrect VF token provided for device");
                return ErrorReason.Fail(Errno.EACCES, $"{name}: the vf_token given for {Pname} is not the token of its PF {pf.Pname}");
            }
        }
        else if (_vfToken is { } token)
        {
            token.Lock.Lock();
            try
            {
                if (token.Users != 0)
                {
                    if (!vfToken)
                    {
                        Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: VF token required to access device");
                        return ErrorReason.Fail(Errno.EACCES, $"{name}: {token.Users} VFs of PF {Pname} are open; the PF opens only with their vf_token");
                    }

                    if (token.Uuid != uuid)
                    {
                        Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: Incorrect VF token provided for device");
                        return ErrorReason.Fail(Errno.EACCES, $"{name}: the vf_token given for PF {Pname} is not the one its {token.Users} open VFs use");
                    }
                }
                else if (vfToken)
                {
                    token.Uuid = uuid;
                }
            }
            finally
            {
                token.Lock.Unlock();
            }
        }
        else if (vfToken)
        {
            Core.Kernel.Log.Info($"{VfioPciDriver.DriverName} {Pname}: VF token incorrectly provided, not a PF or VF");
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: {Pname} is neither an SR-IOV PF nor a VF, so it takes no vf_token");
        }

        return 0;
    }

    // ---- VFIO_DEVICE_FEATURE_PCI_VF_TOKEN.

    /// <summary>
    /// vfio_pci_core_feature_token(): -ENOTTY without a token (not a vfio-pci PF); SET only
    /// (GET would expose the previous user's token: -EINVAL), 16 bytes; the token becomes
    /// the one given.
    /// </summary>
    private int FeatureToken(uint flags, ulong arg, ulong argsz)
    {
        if (_vfToken is not { } token)
        {
            return ErrorReason.Fail(Errno.ENOTTY, $"VFIO_DEVICE_FEATURE: {Pname} is not an SR-IOV PF bound to vfio-pci, so it has no VF token");
        }

        int ret = VfioDeviceFeatures.Check(flags, argsz, VfioFeature.Set, 16);
        if (ret != 1)
        {
            return ret;
        }

        Span<byte> uuid = stackalloc byte[16];
        if (UserMemory.CopyFromUser(uuid, arg) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"VFIO_DEVICE_FEATURE: cannot read the 16-byte VF token at 0x{arg:x}");
        }

        token.Lock.Lock();
        token.Uuid = BinaryPrimitives.ReadUInt128BigEndian(uuid);
        token.Lock.Unlock();
        return 0;
    }

    // ---- UUIDs (lib/uuid.c).

    /// <summary>uuid_gen(): 16 random bytes with the version 4 and variant bits.</summary>
    internal static UInt128 UuidGen(KRandom random)
    {
        Span<byte> b = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(b, random.NextU64());
        BinaryPrimitives.WriteUInt64LittleEndian(b[8..], random.NextU64());
        b[6] = (byte)((b[6] & 0x0f) | 0x40);
        b[8] = (byte)((b[8] & 0x3f) | 0x80);
        return BinaryPrimitives.ReadUInt128BigEndian(b);
    }

    /// <summary>uuid_parse(): 36 characters, hyphens at 8, 13, 18 and 23, hex digits elsewhere; false is -EINVAL.</summary>
    internal static bool UuidParse(ReadOnlySpan<char> s, out UInt128 uuid)
    {
        uuid = 0;
        if (s.Length < UuidStringLen)
        {
            return false;
        }

        for (int i = 0; i < UuidStringLen; i++)
        {
            char c = s[i];
            if (i is 8 or 13 or 18 or 23)
            {
                if (c != '-')
                {
                    return false;
                }

                continue;
            }

            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }

            uuid = (uuid << 4) | (UInt128)(uint)(char.IsAsciiDigit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
        }

        return true;
    }

    /// <summary>The %pUb form of a token.</summary>
    internal static string UuidFormat(UInt128 uuid)
    {
        string h = ((ulong)(uuid >> 64)).ToString("x16", CultureInfo.InvariantCulture) + ((ulong)uuid).ToString("x16", CultureInfo.InvariantCulture);
        return $"{h[..8]}-{h[8..12]}-{h[12..16]}-{h[16..20]}-{h[20..]}";
    }
}
