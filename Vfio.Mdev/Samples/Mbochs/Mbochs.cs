// Models samples/vfio-mdev/mbochs.c (v6.12; no behaviour difference from v6.1, the first
// release with mdev_register_parent): module init and exit, the three types, the memory
// pool (the module parameter registered under the name "count", in MiB) and the mdev
// driver (probe, remove, get_available, show_description, the vendor/memory attribute
// group). The vfio device is in MbochsDevice.cs, its dma-bufs in MbochsDmabuf.cs.
//
// Lock order: the mdev's device_lock (driver core) → the device's ops_lock. The pool is an
// atomic counter reserved with compare-and-exchange in init and given back in release.

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Mdev.Samples.Mbochs;

/// <summary>One mbochs type: its video memory and the EDID's largest mode.</summary>
public sealed class MbochsType : MdevType
{
    internal MbochsType(string sysfsName, int mbytes, uint maxX, uint maxY)
        : base(sysfsName, Mbochs.ClassName + "-" + sysfsName)
    {
        MBytes = mbytes;
        MaxX = maxX;
        MaxY = maxY;
    }

    /// <summary>Video memory in MiB.</summary>
    public int MBytes { get; }

    /// <summary>max_xres of the EDID region (0: no limit).</summary>
    public uint MaxX { get; }

    /// <summary>max_yres of the EDID region (0: no limit).</summary>
    public uint MaxY { get; }
}

/// <summary>
/// The mbochs sample (a Bochs-dispi display whose framebuffer user space gets as a dma-buf):
/// the mdev driver, the class device <c>/sys/devices/virtual/mbochs/mbochs</c> that is its
/// parent, and the types <c>mbochs-small</c>, <c>mbochs-medium</c>, <c>mbochs-large</c>.
/// </summary>
public sealed class Mbochs : MdevDriver
{
    /// <summary>MBOCHS_NAME.</summary>
    public const string DriverName = "mbochs";

    /// <summary>MBOCHS_CLASS_NAME.</summary>
    public const string ClassName = "mbochs";

    /// <summary>The default pool in MiB (module parameter <c>count</c>).</summary>
    public const int DefaultMBytes = 256;

    private readonly MbochsType[] _types;
    private int _availMBytes;

    private Mbochs(MdevCore core, int maxMBytes)
        : base(DriverName)
    {
        Core = core;
        MaxMBytes = maxMBytes;
        _availMBytes = maxMBytes;
        _types = [new MbochsType("small", 4, 800, 600), new MbochsType("medium", 16, 1920, 1440), new MbochsType("large", 64, 0, 0)];
        Ops = new MbochsOps(this);
        Parent = new MdevParent();
    }

    /// <summary>The mdev core.</summary>
    public MdevCore Core { get; }

    /// <summary>The module parameter (max_mbytes).</summary>
    public int MaxMBytes { get; }

    /// <summary>mbochs_avail_mbytes: MiB of the pool not reserved by a device.</summary>
    public int AvailableMBytes => Volatile.Read(ref _availMBytes);

    /// <summary>The types, in the kernel's order.</summary>
    public IReadOnlyList<MbochsType> Types => _types;

    /// <summary>The class <c>mbochs</c>.</summary>
    public DeviceClass Class { get; private set; } = null!;

    /// <summary>The parent device.</summary>
    public SimDevice ParentDevice { get; private set; } = null!;

    /// <summary>mbochs_parent.</summary>
    public MdevParent Parent { get; }

    /// <inheritdoc/>
    public override string DeviceApi => "vfio-pci";

    internal MbochsOps Ops { get; }

    /// <summary>mbochs_dev_init(): <paramref name="mbytes"/> is the pool in MiB.</summary>
    public static Mbochs Load(SimMachine machine, int mbytes = DefaultMBytes)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var m = new Mbochs(MdevCore.Of(machine), mbytes);
        int err = m.Init();
        return err == 0 ? m : throw new InvalidOperationException($"mbochs: module init failed: {ErrnoExtensions.FromReturn(err).Describe()}");
    }

    /// <summary>mbochs_dev_exit().</summary>
    public void Unload() => SampleModule.Exit(Core, this, Parent, Class, ParentDevice);

    /// <summary>mbochs_get_available(): the pool left divided by the type's MiB.</summary>
    public override int GetAvailable(MdevType type) => AvailableMBytes / ((MbochsType)type).MBytes;

    /// <summary>mbochs_show_description().</summary>
    public override string ShowDescription(MdevType type) => $"virtual display, {((MbochsType)type).MBytes} MB video memory\n";

    /// <summary>mbochs_probe().</summary>
    public override int Probe(MdevDevice mdev)
    {
        MbochsDevice? state = VfioDevice.Alloc(mdev, Ops, static () => new MbochsDevice(), out int err);
        if (state is null)
        {
            return err;
        }

        err = state.RegisterEmulatedIommuDev();
        if (err != 0)
        {
            state.PutDevice();
            return err;
        }

        mdev.DriverData = state;
        if (mdev.SysfsDir is { } dir && Core.Machine.Sysfs.CreateDir(dir, "vendor") is { } vendor)
        {
            Core.Machine.Sysfs.CreateFile(vendor, "memory", 0x124, () => $"{state.Type.MBytes} MB\n");
            state.VendorDir = vendor;
        }

        return 0;
    }

    /// <summary>mbochs_remove().</summary>
    public override void Remove(MdevDevice mdev)
    {
        var state = (MbochsDevice)mdev.DriverData!;
        if (state.VendorDir is { } vendor)
        {
            Core.Machine.Sysfs.Remove(vendor);
            state.VendorDir = null;
        }

        state.UnregisterGroupDev();
        state.PutDevice();
    }

    /// <summary>The <see cref="MbochsDevice"/> of <paramref name="mdev"/>, or null.</summary>
    public static MbochsDevice? DeviceOf(MdevDevice mdev)
    {
        ArgumentNullException.ThrowIfNull(mdev);
        return mdev.DriverData as MbochsDevice;
    }

    /// <summary>The init's reservation: -ENOSPC when the pool has less than <paramref name="mbytes"/>.</summary>
    internal int Reserve(int mbytes)
    {
        int avail = Volatile.Read(ref _availMBytes);
        while (true)
        {
            if (avail < mbytes)
            {
                return ErrorReason.Fail(Errno.ENOSPC, $"mbochs: {mbytes} MiB wanted, {avail} MiB left of the pool");
            }

            int seen = Interlocked.CompareExchange(ref _availMBytes, avail - mbytes, avail);
            if (seen == avail)
            {
                return 0;
            }

            avail = seen;
        }
    }

    internal void Unreserve(int mbytes) => Interlocked.Add(ref _availMBytes, mbytes);

    private int Init()
    {
        int err = SampleModule.Init(Core, this, ClassName, DriverName, Parent, _types, out DeviceClass cls, out SimDevice device);
        if (err == 0)
        {
            (Class, ParentDevice) = (cls, device);
        }

        return err;
    }
}
