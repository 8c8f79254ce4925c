// A small vendor driver in the 2016 mdev API (parent_ops of v4.10), in the spirit of the
// series' mtty sample and of the GVT-g vendor of the time: one parent device
// (/sys/devices/virtual/legacy_pin/legacy_pin), one type, no device regions of its own.
// What it does is pin guest pages like a DMA engine would: at open it registers a
// VFIO_IOMMU_NOTIFY notifier for DMA_UNMAP (as every pinning vendor had to), pins through
// vfio_pin_pages with user PFN arrays, unpins what a DMA_UNMAP covers, unpins everything
// and unregisters the notifier at release, and refuses removal while it is open (EBUSY).
//
// Lock order: _lock (the sample's state) is a leaf, never held across a vfio call.

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Design2016;

/// <summary>The legacy pinning sample's per-mdev state.</summary>
public sealed class LegacyPinState : IVfioIommuNotifier
{
    private readonly LegacyPinSample _sample;
    private readonly Dictionary<ulong, int> _pins = [];

    internal LegacyPinState(LegacyPinSample sample, MdevDevice mdev)
    {
        _sample = sample;
        Mdev = mdev;
    }

    /// <summary>The mdev.</summary>
    public MdevDevice Mdev { get; }

    /// <summary>The device is open (between open and release).</summary>
    public bool IsOpen { get; internal set; }

    /// <summary>The notifier is registered.</summary>
    public bool NotifierRegistered { get; internal set; }

    /// <summary>DMA_UNMAP notifications received: (iova, size).</summary>
    public List<(ulong Iova, ulong Size)> Unmaps { get; } = [];

    /// <summary>Pins held, by user (IOVA) PFN, a snapshot.</summary>
    public IReadOnlyDictionary<ulong, int> Pins
    {
        get
        {
            _sample.Lock.Lock();
            try
            {
                return new Dictionary<ulong, int>(_pins);
            }
            finally
            {
                _sample.Lock.Unlock();
            }
        }
    }

    /// <summary>vfio_pin_pages of <paramref name="npage"/> pages from <paramref name="iova"/> (each its own user PFN); npage or -errno.</summary>
    public int Pin(ulong iova, int npage, int prot) => PinPfns(UserPfns(iova, npage), prot, new ulong[npage]);

    /// <summary>vfio_pin_pages with an explicit user PFN array; npage or -errno. <paramref name="physPfn"/> receives the host frames.</summary>
    public int PinPfns(ulong[] userPfn, int prot, ulong[] physPfn)
    {
        ArgumentNullException.ThrowIfNull(userPfn);
        int r = Vfio2016.PinPages(VfioMdevDriver.DeviceOf(Mdev), userPfn, prot, physPfn);
        if (r > 0)
        {
            _sample.Lock.Lock();
            foreach (ulong p in userPfn)
            {
                _pins[p] = _pins.GetValueOrDefault(p) + 1;
            }

            _sample.Lock.Unlock();
        }

        return r;
    }

    /// <summary>vfio_unpin_pages of <paramref name="npage"/> pages from <paramref name="iova"/>; the count or -errno.</summary>
    public int Unpin(ulong iova, int npage) => UnpinPfns(UserPfns(iova, npage));

    /// <inheritdoc/>
    public void DmaUnmap(ulong iova, ulong size)
    {
        _sample.Lock.Lock();
        Unmaps.Add((iova, size));
        var inRange = new List<ulong>();
        foreach (KeyValuePair<ulong, int> p in _pins)
        {
            ulong a = p.Key << 12;
            if (a >= iova && a - iova < size)
            {
                for (int i = 0; i < p.Value; i++)
                {
                    inRange.Add(p.Key);
                }
            }
        }

        _sample.Lock.Unlock();
        if (inRange.Count != 0)
        {
            UnpinPfns([.. inRange]);
        }
    }

    /// <summary>Unpins everything this mdev pinned (release).</summary>
    internal void UnpinAll()
    {
        var all = new List<ulong>();
        _sample.Lock.Lock();
        foreach (KeyValuePair<ulong, int> p in _pins)
        {
            for (int i = 0; i < p.Value; i++)
            {
                all.Add(p.Key);
            }
        }

        _sample.Lock.Unlock();
        for (int at = 0; at < all.Count; at += VfioDevice.PinPagesMaxEntries)
        {
            UnpinPfns([.. all.Skip(at).Take(VfioDevice.PinPagesMaxEntries)]);
        }
    }

    private static ulong[] UserPfns(ulong iova, int npage)
    {
        ulong[] pfns = new ulong[Math.Max(npage, 0)];
        for (int i = 0; i < pfns.Length; i++)
        {
            pfns[i] = (iova >> 12) + (ulong)i;
        }

        return pfns;
    }

    private int UnpinPfns(ulong[] userPfn)
    {
        int r = Vfio2016.UnpinPages(VfioMdevDriver.DeviceOf(Mdev), userPfn);
        if (r > 0)
        {
            _sample.Lock.Lock();
            for (int i = 0; i < r; i++)
            {
                ulong p = userPfn[i];
                if (_pins.TryGetValue(p, out int n))
                {
                    if (n <= 1)
                    {
                        _pins.Remove(p);
                    }
                    else
                    {
                        _pins[p] = n - 1;
                    }
                }
            }

            _sample.Lock.Unlock();
        }

        return r;
    }
}

/// <summary>The legacy pinning sample: a 2016-API vendor driver whose mdevs pin guest memory.</summary>
public sealed class LegacyPinSample : MdevParentOps
{
    /// <summary>The parent's name (its class and device).</summary>
    public const string ParentName = "legacy_pin";

    private readonly Dictionary<MdevDevice, LegacyPinState> _states = [];

    private LegacyPinSample(SimMachine machine)
    {
        Lock = new KMutex(machine.Kernel, "legacy_pin.lock");
        Types = [new MdevType("1", "Legacy pinning DMA engine")];
    }

    /// <summary>The parent device.</summary>
    public SimDevice Parent { get; private set; } = null!;

    /// <summary>The type (<c>legacy_pin-1</c>).</summary>
    public MdevType Type => Types[0];

    /// <summary>Register the DMA_UNMAP notifier at open (true, as a correct vendor does); false shows what pinning without one does.</summary>
    public bool RegisterNotifierAtOpen { get; set; } = true;

    /// <summary>Refuse removal while open with EBUSY (true, as GVT-g did in v4.10).</summary>
    public bool RefuseRemoveWhileOpen { get; set; } = true;

    /// <inheritdoc/>
    public override IReadOnlyList<MdevType> SupportedTypes => Types;

    internal KMutex Lock { get; }

    private MdevType[] Types { get; }

    /// <summary>Loads the sample: class and parent device, then mdev_register_device.</summary>
    public static LegacyPinSample Load(SimMachine machine)
    {
        Mdev2016Core core = Mdev2016Core.Of(machine);
        var s = new LegacyPinSample(machine);
        DeviceClass cls = DeviceClass.Create(machine, ParentName);
        var parent = new SimDevice(machine, ParentName);
        int err = cls.DeviceRegister(parent);
        if (err == 0)
        {
            err = core.RegisterDevice(parent, s);
        }

        if (err != 0)
        {
            throw new InvalidOperationException($"legacy_pin: registration failed ({err})");
        }

        s.Parent = parent;
        return s;
    }

    /// <summary>The state of <paramref name="mdev"/>; throws when it is not one of this sample's.</summary>
    public LegacyPinState StateOf(MdevDevice mdev)
    {
        Lock.Lock();
        try
        {
            return _states.TryGetValue(mdev, out LegacyPinState? s) ? s : throw new InvalidOperationException($"{mdev.Name} is not a legacy_pin mdev");
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <summary>Instances the parent offers (the type's available_instances is what is left).</summary>
    public int MaxInstances { get; set; } = 4;

    /// <inheritdoc/>
    public override int AvailableInstances(MdevType type)
    {
        Lock.Lock();
        try
        {
            return Math.Max(MaxInstances - _states.Count, 0);
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <inheritdoc/>
    public override int Create(MdevType type, MdevDevice mdev)
    {
        Lock.Lock();
        try
        {
            if (_states.Count >= MaxInstances)
            {
                return ErrorReason.Fail(Errno.ENOSPC, $"legacy_pin: all {MaxInstances} instances are in use");
            }

            _states[mdev] = new LegacyPinState(this, mdev);
            return 0;
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <inheritdoc/>
    public override int Remove(MdevDevice mdev)
    {
        Lock.Lock();
        try
        {
            if (!_states.TryGetValue(mdev, out LegacyPinState? s))
            {
                return Errno.EINVAL.Negative();
            }

            if (s.IsOpen && RefuseRemoveWhileOpen)
            {
                return Errno.EBUSY.Negative();
            }

            _states.Remove(mdev);
            return 0;
        }
        finally
        {
            Lock.Unlock();
        }
    }

    /// <inheritdoc/>
    public override int Open(MdevDevice mdev)
    {
        LegacyPinState s = StateOf(mdev);
        if (RegisterNotifierAtOpen)
        {
            ulong events = VfioIommuNotify.DmaUnmap;
            int r = Vfio2016.RegisterNotifier(VfioDeviceOf(mdev), VfioNotifyType.Iommu, ref events, s);
            if (r != 0)
            {
                return r;
            }

            s.NotifierRegistered = true;
        }

        s.IsOpen = true;
        return 0;
    }

    /// <inheritdoc/>
    public override void Release(MdevDevice mdev)
    {
        LegacyPinState? s;
        Lock.Lock();
        _states.TryGetValue(mdev, out s);
        Lock.Unlock();
        if (s is null)
        {
            return;
        }

        s.UnpinAll();
        if (s.NotifierRegistered)
        {
            Vfio2016.UnregisterNotifier(VfioDeviceOf(mdev), VfioNotifyType.Iommu, s);
            s.NotifierRegistered = false;
        }

        s.IsOpen = false;
    }
}
