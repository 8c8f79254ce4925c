// Models samples/vfio-mdev/mdpy.c (v6.12; no behaviour difference from v6.1, the first
// release with mdev_register_parent): module init and exit, the three types, the "count"
// module parameter and the mdev driver (probe, remove, get_available, show_description,
// the vendor/resolution attribute group). The vfio device itself is in MdpyDevice.cs.
//
// Lock order: the mdev's device_lock (the driver core, around probe and remove) → the
// device's ops_lock (MdpyDevice). The live-device count (mdpy_count) is a plain counter
// read and bumped without a lock, as in the kernel: probes racing at the cap may both pass.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mdpy;

/// <summary>One mdpy type: a fixed XRGB8888 resolution.</summary>
public sealed class MdpyType : MdevType
{
    internal MdpyType(string sysfsName, uint width, uint height)
        : base(sysfsName, Mdpy.ClassName + "-" + sysfsName)
    {
        Width = width;
        Height = height;
    }

    /// <summary>DRM fourcc of the framebuffer (XRGB8888).</summary>
    public uint Format => DrmFourcc.Xrgb8888;

    /// <summary>Bytes per pixel.</summary>
    public uint BytesPerPixel => 4;

    /// <summary>Width in pixels.</summary>
    public uint Width { get; }

    /// <summary>Height in pixels.</summary>
    public uint Height { get; }
}

/// <summary>
/// The mdpy sample (a virtual PCI display with a plain framebuffer): the mdev driver, the
/// class device <c>/sys/devices/virtual/mdpy/mdpy</c> that is its parent, and the types
/// <c>mdpy-vga</c>, <c>mdpy-xga</c>, <c>mdpy-hd</c>. Load it with <see cref="Load"/>.
/// </summary>
public sealed class Mdpy : MdevDriver
{
    /// <summary>MDPY_NAME: the driver's name.</summary>
    public const string DriverName = "mdpy";

    /// <summary>MDPY_CLASS_NAME.</summary>
    public const string ClassName = "mdpy";

    /// <summary>The default of the <c>count</c> module parameter.</summary>
    public const int DefaultCount = 4;

    private readonly MdpyType[] _types;
    private int _count;

    private Mdpy(MdevCore core, int maxDevices)
        : base(DriverName)
    {
        Core = core;
        MaxDevices = maxDevices;
        _types = [new MdpyType("vga", 640, 480), new MdpyType("xga", 1024, 768), new MdpyType("hd", 1920, 1080)];
        Ops = new MdpyOps(this);
        Parent = new MdevParent();
    }

    /// <summary>The mdev core.</summary>
    public MdevCore Core { get; }

    /// <summary>SimKernel of the machine.</summary>
    public SimKernel Kernel => Core.Kernel;

    /// <summary>The module parameter <c>count</c> (max_devices).</summary>
    public int MaxDevices { get; }

    /// <summary>mdpy_count: devices initialised and not yet released.</summary>
    public int LiveDevices => Volatile.Read(ref _count);

    /// <summary>The types, in the kernel's order.</summary>
    public IReadOnlyList<MdpyType> Types => _types;

    /// <summary>The class <c>mdpy</c>.</summary>
    public DeviceClass Class { get; private set; } = null!;

    /// <summary>The parent device, <c>/sys/devices/virtual/mdpy/mdpy</c>.</summary>
    public SimDevice ParentDevice { get; private set; } = null!;

    /// <summary>mdpy_parent.</summary>
    public MdevParent Parent { get; }

    /// <inheritdoc/>
    public override string DeviceApi => "vfio-pci";

    internal MdpyOps Ops { get; }

    /// <summary>
    /// mdpy_dev_init(): registers the driver on the mdev bus, creates the class and its
    /// device, and registers the device as the parent of the three types.
    /// <paramref name="count"/> is the module parameter (live devices allowed).
    /// </summary>
    public static Mdpy Load(SimMachine machine, int count = DefaultCount)
    {
        ArgumentNullException.ThrowIfNull(machine);
        MdevCore core = MdevCore.Of(machine);
        var mdpy = new Mdpy(core, count);
        int err = mdpy.Init();
        if (err != 0)
        {
            throw new InvalidOperationException($"mdpy: module init failed: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        return mdpy;
    }

    /// <summary>mdpy_dev_exit(): unregisters the parent (removing every mdpy device), the class device, the driver and the class.</summary>
    public void Unload() => SampleModule.Exit(Core, this, Parent, Class, ParentDevice);

    /// <summary>mdpy_get_available(): count minus the live devices.</summary>
    public override int GetAvailable(MdevType type) => MaxDevices - LiveDevices;

    /// <summary>mdpy_show_description().</summary>
    public override string ShowDescription(MdevType type)
    {
        var t = (MdpyType)type;
        return $"virtual display, {t.Width}x{t.Height} framebuffer\n";
    }

    /// <summary>mdpy_probe(): vfio_alloc_device (which runs init: the cap, the framebuffer, the config space) and vfio_register_emulated_iommu_dev.</summary>
    public override int Probe(MdevDevice mdev)
    {
        MdpyDevice? state = VfioDevice.Alloc(mdev, Ops, static () => new MdpyDevice(), out int err);
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
        AddDevGroups(mdev, state);
        return 0;
    }

    /// <summary>mdpy_remove(): vfio_unregister_group_dev (waits for every fd) then the last put.</summary>
    public override void Remove(MdevDevice mdev)
    {
        var state = (MdpyDevice)mdev.DriverData!;
        RemoveDevGroups(state);
        state.DevInfo("mdpy_remove");
        state.UnregisterGroupDev();
        state.PutDevice();
    }

    /// <summary>The <see cref="MdpyDevice"/> of <paramref name="mdev"/>, or null when it is not bound here.</summary>
    public static MdpyDevice? DeviceOf(MdevDevice mdev)
    {
        ArgumentNullException.ThrowIfNull(mdev);
        return mdev.DriverData as MdpyDevice;
    }

    /// <summary>mdpy_init_dev()'s cap check: -ENOMEM when <see cref="MaxDevices"/> are live.</summary>
    internal int TryCount() => Volatile.Read(ref _count) >= MaxDevices ? ErrorReason.Fail(Errno.ENOMEM, $"mdpy: {MaxDevices} devices exist (module parameter count)") : 0;

    internal void CountUp() => Interlocked.Increment(ref _count);

    internal void CountDown() => Interlocked.Decrement(ref _count);

    private int Init()
    {
        int err = SampleModule.Init(Core, this, ClassName, DriverName, Parent, _types, out DeviceClass cls, out SimDevice device);
        if (err == 0)
        {
            (Class, ParentDevice) = (cls, device);
        }

        return err;
    }

    // The driver's dev_groups: the driver core adds them after probe and removes them before remove.
    private void AddDevGroups(MdevDevice mdev, MdpyDevice state)
    {
        if (mdev.SysfsDir is not { } dir)
        {
            return;
        }

        var fs = Core.Machine.Sysfs;
        VfsDir? vendor = fs.CreateDir(dir, "vendor");
        if (vendor is not null)
        {
            fs.CreateFile(vendor, "resolution", 0x124, () => $"{state.Type.Width}x{state.Type.Height}\n");
            state.VendorDir = vendor;
        }
    }

    private void RemoveDevGroups(MdpyDevice state)
    {
        if (state.VendorDir is { } vendor)
        {
            Core.Machine.Sysfs.Remove(vendor);
            state.VendorDir = null;
        }
    }
}
