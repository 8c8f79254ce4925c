// A vendor driver for the mdev core's own tests (the shape of samples/vfio-mdev/mtty.c
// without a device model): a parent that is a class device (/sys/devices/virtual/<class>/<name>),
// types "1" and "2", instances counted by the core (max_instances) or by the driver
// (get_available), an optional description, and a probe that registers an emulated-IOMMU
// vfio device — failing on demand — with an optional request() hook.
//
// Lock rules: probe and remove run under the mdev's device_lock (the driver core holds
// it); remove blocks in vfio_unregister_group_dev until user space closes the device.

using System.Collections.Concurrent;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Platform;
using Vfio.Platform.Base;

namespace Vfio.Tests.Mdev;

/// <summary>The vfio ops of a test mdev: counts opens and closes; request() only when asked for.</summary>
internal sealed class TestMdevOps : VfioDeviceOps
{
    private int _opens;
    private int _closes;

    public TestMdevOps(bool hasRequest) => HasRequest = hasRequest;

    public bool HasRequest { get; }

    public override string Name => "mtest";

    public override VfioOps Provides => HasRequest ? base.Provides : base.Provides & ~VfioOps.Request;

    public int Opens => Volatile.Read(ref _opens);

    public int Closes => Volatile.Read(ref _closes);

    public ConcurrentQueue<uint> Requests { get; } = new();

    public Action<VfioDevice, uint>? OnRequest { get; set; }

    public override int OpenDevice(VfioDevice device)
    {
        Interlocked.Increment(ref _opens);
        return 0;
    }

    public override void CloseDevice(VfioDevice device) => Interlocked.Increment(ref _closes);

    public override void Request(VfioDevice device, uint count)
    {
        Requests.Enqueue(count);
        OnRequest?.Invoke(device, count);
    }

    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => cmd == VfioIoctl.DeviceReset ? 0 : Errno.ENOTTY.Negative();

    // The devices this driver allocates are plain vfio devices.
    internal sealed class Device : VfioDevice
    {
    }
}

/// <summary>The test vendor driver, counted by the core: <see cref="Max"/> instances per parent.</summary>
internal class TestMdevDriver : MdevDriver
{
    private readonly ConcurrentDictionary<MdevDevice, VfioDevice> _devices = new();
    private int _probes;
    private int _removes;

    public TestMdevDriver(string name = "mtest", int maxInstances = 4, bool hasRequest = false)
        : base(name)
    {
        Max = maxInstances;
        Ops = new TestMdevOps(hasRequest);
    }

    public int Max { get; set; }

    public override int MaxInstances => Max;

    public override string DeviceApi => "vfio-pci";

    public TestMdevOps Ops { get; }

    /// <summary>When not 0, the next probes fail with it (after allocating, before registering: the driver undoes its part).</summary>
    public int ProbeError { get; set; }

    public int Probes => Volatile.Read(ref _probes);

    public int Removes => Volatile.Read(ref _removes);

    public IReadOnlyDictionary<MdevDevice, VfioDevice> VfioDevices => _devices;

    public VfioDevice VfioDeviceOf(Guid uuid) => _devices.First(kv => kv.Key.Uuid == uuid).Value;

    public override int Probe(MdevDevice mdev)
    {
        Interlocked.Increment(ref _probes);
        VfioDevice? vdev = VfioDevice.Alloc(mdev, Ops, static () => new TestMdevOps.Device(), out int err);
        if (vdev is null)
        {
            return err;
        }

        if (ProbeError != 0)
        {
            vdev.PutDevice();
            return ProbeError;
        }

        err = vdev.RegisterEmulatedIommuDev();
        if (err != 0)
        {
            vdev.PutDevice();
            return err;
        }

        _devices[mdev] = vdev;
        return 0;
    }

    public override void Remove(MdevDevice mdev)
    {
        Interlocked.Increment(ref _removes);
        VfioDevice vdev = _devices[mdev];
        vdev.UnregisterGroupDev();
        _devices.TryRemove(mdev, out _);
        vdev.PutDevice();
    }
}

/// <summary>The test driver with show_description.</summary>
internal sealed class DescribedTestMdevDriver : TestMdevDriver
{
    public DescribedTestMdevDriver(string name = "mtest", int maxInstances = 4)
        : base(name, maxInstances)
    {
    }

    public override string ShowDescription(MdevType type) => $"test type {type.SysfsName}\n";
}

/// <summary>The test driver that counts its own instances (get_available): a pool of <see cref="Pool"/> units, type N takes N.</summary>
internal sealed class SelfCountedTestMdevDriver : TestMdevDriver
{
    private int _pool;

    public SelfCountedTestMdevDriver(string name = "mtest", int pool = 3)
        : base(name, maxInstances: 0)
    {
        _pool = pool;
    }

    public int Pool => Volatile.Read(ref _pool);

    public override int GetAvailable(MdevType type) => Pool / int.Parse(type.SysfsName, System.Globalization.CultureInfo.InvariantCulture);

    public override int Probe(MdevDevice mdev)
    {
        int need = int.Parse(mdev.Type.SysfsName, System.Globalization.CultureInfo.InvariantCulture);
        while (true)
        {
            int now = Pool;
            if (now < need)
            {
                return Errno.ENOSPC.Negative();
            }

            if (Interlocked.CompareExchange(ref _pool, now - need, now) == now)
            {
                break;
            }
        }

        int ret = base.Probe(mdev);
        if (ret != 0)
        {
            Interlocked.Add(ref _pool, need);
        }

        return ret;
    }

    public override void Remove(MdevDevice mdev)
    {
        base.Remove(mdev);
        Interlocked.Add(ref _pool, int.Parse(mdev.Type.SysfsName, System.Globalization.CultureInfo.InvariantCulture));
    }
}

/// <summary>A parent: class <c>mtest</c>, device <c>mtest</c> (or another name), types 1 and 2, registered on the core.</summary>
internal sealed class TestMdevParent
{
    private TestMdevParent(MdevCore core, DeviceClass cls, SimDevice dev, TestMdevDriver driver, MdevType[] types)
    {
        Core = core;
        Class = cls;
        Dev = dev;
        Driver = driver;
        Types = types;
    }

    public MdevCore Core { get; }

    public DeviceClass Class { get; }

    public SimDevice Dev { get; }

    public TestMdevDriver Driver { get; }

    public MdevParent Parent { get; } = new();

    public MdevType[] Types { get; }

    public string TypesPath => $"{Dev.SysfsDir!.FullPath}/mdev_supported_types";

    public string TypePath(int n = 1) => $"{TypesPath}/{Dev.DriverString}-{n}";

    /// <summary>Loads the driver (mdev_register_driver), makes the class device and registers it as a parent; the registration's result in <paramref name="ret"/>.</summary>
    public static TestMdevParent Create(SimMachine machine, TestMdevDriver driver, out int ret, string className = "mtest", string name = "mtest", MdevType[]? types = null, DeviceClass? cls = null, bool registerDriver = true)
    {
        MdevCore core = MdevCore.Of(machine);
        if (registerDriver && core.RegisterDriver(driver) != 0)
        {
            throw new InvalidOperationException("driver registration failed");
        }

        cls ??= DeviceClass.Create(machine, className);
        var dev = new SimDevice(machine, name);
        if (cls.DeviceRegister(dev) != 0)
        {
            throw new InvalidOperationException("device_register failed");
        }

        var p = new TestMdevParent(core, cls, dev, driver, types ?? [new MdevType("1", "Single"), new MdevType("2")]);
        ret = core.RegisterParent(p.Parent, dev, driver, p.Types);
        return p;
    }

    public static TestMdevParent Create(SimMachine machine, TestMdevDriver driver)
    {
        TestMdevParent p = Create(machine, driver, out int ret);
        return ret == 0 ? p : throw new InvalidOperationException($"mdev_register_parent failed: {ret}");
    }

    public void Unregister() => Core.UnregisterParent(Parent);
}
