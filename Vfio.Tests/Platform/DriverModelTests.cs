using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Pci;
using Vfio.Platform.Sysfs;

namespace Vfio.Tests.Platform;

/// <summary>A vfio-pci stand-in for driver-model tests: matches only through driver_override, manages its own DMA.</summary>
internal sealed class OverrideOnlyDriver(string name = "vfio-pci") : PciDriver(name, [new PciDeviceId(PciDeviceId.Any, PciDeviceId.Any, OverrideOnly: true)])
{
    public Action<PciDevice>? OnRemove { get; set; }

    public override bool DriverManagedDma => true;

    public override int Probe(PciDevice dev, PciDeviceId id) => 0;

    public override void Remove(PciDevice dev) => OnRemove?.Invoke(dev);
}

internal sealed class PciFixture
{
    public const string Bdf = "0000:01:00.0";

    public PciFixture(SchedulerMode mode = SchedulerMode.Real)
    {
        Machine = Machines.Create(mode);
        Host = new HostPciDriver("e1000e", new PciDeviceId(0x8086, 0x10d3));
        Vfio = new OverrideOnlyDriver();
        Stub = new PciStubDriver();
        Assert.That(Machine.Pci.RegisterDriver(Host), Is.Zero);
        Assert.That(Machine.Pci.RegisterDriver(Vfio), Is.Zero);
        Assert.That(Machine.Pci.RegisterDriver(Stub), Is.Zero);
        Device = new PciDevice(Machine, 0, 1, 0, 0, new PciIdentity(0x8086, 0x10d3, 0x8086, 0xa01f, 0x020000, 3));
        Assert.That(Machine.Pci.Add(Device), Is.Zero);
    }

    public SimMachine Machine { get; }

    public SysfsTree Sys => Machine.Sysfs;

    public HostPciDriver Host { get; }

    public OverrideOnlyDriver Vfio { get; }

    public PciStubDriver Stub { get; }

    public PciDevice Device { get; }

    public static string Dev(string attr) => $"/sys/bus/pci/devices/{Bdf}/{attr}";

    public static string Drv(string driver, string attr) => $"/sys/bus/pci/drivers/{driver}/{attr}";

    public string? DriverName => Sys.ReadLink(Dev("driver"))?.Split('/')[^1];
}

public sealed class DriverModelTests
{
    private const long Written = 13; // "0000:01:00.0\n"

    [Test]
    public void TheDeviceAppearsInSysfs_WithTheKernelsLayoutAndFormats()
    {
        var f = new PciFixture();

        Assert.That(f.Sys.ReadLink($"/sys/bus/pci/devices/{PciFixture.Bdf}"), Is.EqualTo($"../../../devices/pci0000:00/{PciFixture.Bdf}"));
        Assert.That(f.Sys.Read(PciFixture.Dev("vendor")), Is.EqualTo("0x8086\n"));
        Assert.That(f.Sys.Read(PciFixture.Dev("device")), Is.EqualTo("0x10d3\n"));
        Assert.That(f.Sys.Read(PciFixture.Dev("class")), Is.EqualTo("0x020000\n"));
        Assert.That(f.Sys.Read(PciFixture.Dev("subsystem_device")), Is.EqualTo("0xa01f\n"));
        Assert.That(f.Sys.Read(PciFixture.Dev("revision")), Is.EqualTo("0x03\n"));
        Assert.That(f.Sys.Read(PciFixture.Dev("driver_override")), Is.EqualTo("(null)\n"));
        Assert.That(f.Sys.ReadLink(PciFixture.Dev("driver")), Is.EqualTo("../../../bus/pci/drivers/e1000e"), "bound to its host driver at start");
        Assert.That(f.Sys.ReadLink(PciFixture.Dev("subsystem")), Is.EqualTo("../../../bus/pci"));
        Assert.That(f.Sys.ReadLink(PciFixture.Drv("e1000e", PciFixture.Bdf)), Is.EqualTo($"../../../../devices/pci0000:00/{PciFixture.Bdf}"));
        Assert.That(f.Sys.List("/sys/bus/pci/drivers/e1000e"), Is.SupersetOf(new[] { "bind", "unbind", "new_id", "remove_id", PciFixture.Bdf }));
        Assert.That(f.Sys.Read(PciFixture.Dev("uevent")), Is.EqualTo("DRIVER=e1000e\n"));
    }

    [Test]
    public void SelftestSetupAndCleanupScripts_RunAsOnLinux()
    {
        // tools/testing/selftests/vfio/scripts/setup.sh, then cleanup.sh.
        var f = new PciFixture();
        Assert.That(f.Sys.Exists($"/sys/bus/pci/devices/{PciFixture.Bdf}"), Is.True);
        string driver = f.DriverName!;
        Assert.That(driver, Is.EqualTo("e1000e"));

        Assert.That(f.Sys.Write(PciFixture.Drv(driver, "unbind"), PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.Sys.IsSymlink(PciFixture.Dev("driver")), Is.False);
        Assert.That(f.Host.RemoveCount, Is.EqualTo(1));
        Assert.That(f.Sys.Write(PciFixture.Dev("driver_override"), "vfio-pci"), Is.EqualTo(9));
        Assert.That(f.Sys.Read(PciFixture.Dev("driver_override")), Is.EqualTo("vfio-pci\n"));
        Assert.That(f.Sys.Write(PciFixture.Drv("vfio-pci", "bind"), PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.DriverName, Is.EqualTo("vfio-pci"));

        Assert.That(f.Sys.Write(PciFixture.Drv("vfio-pci", "unbind"), PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.Sys.Write(PciFixture.Dev("driver_override"), ""), Is.EqualTo(1), "echo \"\" writes a lone newline, which clears");
        Assert.That(f.Sys.Read(PciFixture.Dev("driver_override")), Is.EqualTo("(null)\n"));
        Assert.That(f.Sys.Write(PciFixture.Drv(driver, "bind"), PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.DriverName, Is.EqualTo("e1000e"));
        Assert.That(f.Host.ProbeCount, Is.EqualTo(2));
    }

    [Test]
    public void BindAndUnbind_FailWithTheKernelsErrnos_AndChangeNothing()
    {
        var f = new PciFixture();
        long ENODEV = Errno.ENODEV.Negative();

        Assert.That(f.Sys.Write(PciFixture.Drv("e1000e", "bind"), "0000:09:00.0"), Is.EqualTo(ENODEV), "unknown device");
        Assert.That(f.Sys.Write(PciFixture.Drv("e1000e", "bind"), PciFixture.Bdf), Is.EqualTo(Errno.EBUSY.Negative()), "already bound");
        Assert.That(f.Sys.Write(PciFixture.Drv("vfio-pci", "bind"), PciFixture.Bdf), Is.EqualTo(ENODEV), "vfio-pci matches only through driver_override");
        Assert.That(f.Sys.Write(PciFixture.Drv("vfio-pci", "unbind"), PciFixture.Bdf), Is.EqualTo(ENODEV), "not bound to vfio-pci");
        Assert.That(f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), "0000:09:00.0"), Is.EqualTo(ENODEV));
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", "0000:09:00.0"), Is.EqualTo(ENODEV));
        Assert.That(f.Sys.Write(PciFixture.Dev("driver_override"), new string('x', 5000)), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(f.DriverName, Is.EqualTo("e1000e"));
        Assert.That(f.Host.ProbeCount, Is.EqualTo(1));
        Assert.That(f.Device.DriverOverride, Is.Null);

        Assert.That(f.Sys.Write(PciFixture.Dev("vendor"), "0x1234"), Is.EqualTo(Errno.EACCES.Negative()), "no store()");
        Assert.That(f.Sys.Read(PciFixture.Drv("e1000e", "bind"), out int err), Is.Null);
        Assert.That(err, Is.EqualTo(Errno.EACCES.Negative()), "no show()");
    }

    [Test]
    public void DriversProbe_RebindsAnUnboundDevice_AndHonoursDriverOverride()
    {
        var f = new PciFixture();
        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);

        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.DriverName, Is.EqualTo("e1000e"));

        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);
        f.Sys.Write(PciFixture.Dev("driver_override"), "no-such-driver");
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", PciFixture.Bdf), Is.EqualTo(Written), "finding no driver is not an error");
        Assert.That(f.DriverName, Is.Null);
        f.Sys.Write(PciFixture.Dev("driver_override"), "vfio-pci");
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", PciFixture.Bdf), Is.EqualTo(Written));
        Assert.That(f.DriverName, Is.EqualTo("vfio-pci"));
    }

    [Test]
    public void NewIdAndRemoveId_FollowPciDriverC()
    {
        var f = new PciFixture();
        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);

        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "new_id"), "zz"), Is.EqualTo(Errno.EINVAL.Negative()));
        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "new_id"), "8086"), Is.EqualTo(Errno.EINVAL.Negative()), "needs vendor and device");
        Assert.That(f.Stub.DynamicIds, Is.Empty);
        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "new_id"), "8086 10d3"), Is.EqualTo(10));
        Assert.That(f.DriverName, Is.EqualTo("pci-stub"), "new_id binds matching unbound devices");
        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "new_id"), "0x8086 0x10d3"), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(f.Sys.Write(PciFixture.Drv("e1000e", "new_id"), "8086 1533 ffffffff ffffffff 0 0 7"), Is.EqualTo(Errno.EINVAL.Negative()), "driver_data must match a table entry");
        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "remove_id"), "1234 5678"), Is.EqualTo(Errno.ENODEV.Negative()));
        Assert.That(f.Sys.Write(PciFixture.Drv("pci-stub", "remove_id"), "8086 10d3"), Is.EqualTo(10));
        Assert.That(f.Stub.DynamicIds, Is.Empty);
        Assert.That(f.DriverName, Is.EqualTo("pci-stub"), "removing an id does not unbind");
    }

    [Test]
    public void BusNotifiers_SeeBindingInTheKernelsOrder()
    {
        var f = new PciFixture();
        var seen = new List<BusNotification>();
        f.Machine.Pci.Notifier.Register(new NotifierBlock((_, action, data) =>
        {
            seen.Add((BusNotification)action);
            return BlockingNotifierChain.NOTIFY_OK;
        }));

        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);
        f.Sys.Write(PciFixture.Drv("e1000e", "bind"), PciFixture.Bdf);
        f.Machine.Pci.Remove(f.Device);

        Assert.That(seen, Is.EqualTo(new[]
        {
            BusNotification.UnbindDriver, BusNotification.UnboundDriver,
            BusNotification.BindDriver, BusNotification.BoundDriver,
            BusNotification.DelDevice, BusNotification.UnbindDriver, BusNotification.UnboundDriver, BusNotification.RemovedDevice,
        }));
    }

    [Test]
    public void AFailedProbe_UnwindsTheBinding_AndReportsItsErrno()
    {
        var f = new PciFixture();
        var seen = new List<BusNotification>();
        f.Machine.Pci.Notifier.Register(new NotifierBlock((_, action, _) =>
        {
            seen.Add((BusNotification)action);
            return BlockingNotifierChain.NOTIFY_OK;
        }));
        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);
        seen.Clear();
        f.Host.OnProbe = _ => Errno.EIO.Negative();

        Assert.That(f.Sys.Write(PciFixture.Drv("e1000e", "bind"), PciFixture.Bdf), Is.EqualTo(Errno.EIO.Negative()));
        Assert.That(f.Device.Driver, Is.Null);
        Assert.That(f.Sys.IsSymlink(PciFixture.Dev("driver")), Is.False);
        Assert.That(f.Sys.List("/sys/bus/pci/drivers/e1000e"), Does.Not.Contain(PciFixture.Bdf));
        Assert.That(seen, Is.EqualTo(new[] { BusNotification.BindDriver, BusNotification.DriverNotBound }));
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", PciFixture.Bdf), Is.EqualTo(Written), "a probe failure is not a drivers_probe error");
    }

    [Test]
    public void WithAutoprobeOff_NewDevicesStayUnbound()
    {
        var f = new PciFixture();
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_autoprobe", "0"), Is.EqualTo(2));
        Assert.That(f.Sys.Read("/sys/bus/pci/drivers_autoprobe"), Is.EqualTo("0\n"));
        var second = new PciDevice(f.Machine, 0, 2, 0, 0, new PciIdentity(0x8086, 0x10d3, 0, 0, 0x020000));
        f.Machine.Pci.Add(second);

        Assert.That(second.Driver, Is.Null);
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers_probe", "0000:02:00.0"), Is.EqualTo(Written));
        Assert.That(second.Driver, Is.SameAs(f.Host), "drivers_probe binds even with autoprobe off");
    }

    [Test]
    public void HotUnplug_UnbindsFirst_RemovesTheSysfsEntries_AndReleasesOnTheLastReference()
    {
        var f = new PciFixture();
        bool released = false;
        var dev = new PciDevice(f.Machine, 0, 4, 0, 0, new PciIdentity(0x8086, 0x10d3, 0, 0, 0x020000), release: _ => released = true);
        f.Machine.Pci.Add(dev);
        int fd = f.Machine.Init.Open("/sys/bus/pci/devices/0000:04:00.0/vendor", Vfio.Platform.Fs.OpenFlags.O_RDONLY);
        SimDevice held = f.Machine.Pci.FindDevice("0000:04:00.0")!;

        f.Machine.Pci.Remove(dev);

        Assert.That(f.Host.RemoveCount, Is.EqualTo(1), "the driver's remove ran first");
        Assert.That(f.Sys.Exists("/sys/bus/pci/devices/0000:04:00.0"), Is.False);
        Assert.That(f.Sys.Exists("/sys/devices/pci0000:00/0000:04:00.0"), Is.False);
        Assert.That(f.Machine.Init.Read(fd, new byte[16]), Is.EqualTo(Errno.ENODEV.Negative()), "an attribute opened before removal answers -ENODEV");
        Assert.That(released, Is.False, "someone still holds a reference");
        held.Put();
        dev.Put();
        Assert.That(released, Is.True);
    }

    [Test]
    public void ADuplicateDeviceName_IsEexist_AndChangesNothing()
    {
        var f = new PciFixture();
        f.Machine.Kernel.ExpectWarning("cannot create duplicate filename");
        var twin = new PciDevice(f.Machine, 0, 1, 0, 0, new PciIdentity(0x1234, 0x5678, 0, 0, 0));

        Assert.That(f.Machine.Pci.Add(twin), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(twin.IsRegistered, Is.False);
        Assert.That(f.Machine.Pci.Devices, Has.Count.EqualTo(1));
        Assert.That(f.Sys.Read(PciFixture.Dev("vendor")), Is.EqualTo("0x8086\n"), "the original is untouched");
        Assert.That(f.Machine.Kernel.UnexpectedWarnings, Is.Empty);
    }

    [Test]
    public void Drivers_RegisterOncePerName_AndUnregisteringUnbindsTheirDevices()
    {
        var f = new PciFixture();
        Assert.That(f.Machine.Pci.RegisterDriver(new HostPciDriver("e1000e")), Is.EqualTo(Errno.EBUSY.Negative()));

        f.Machine.Pci.UnregisterDriver(f.Host);

        Assert.That(f.Host.RemoveCount, Is.EqualTo(1));
        Assert.That(f.Device.Driver, Is.Null);
        Assert.That(f.Sys.Exists("/sys/bus/pci/drivers/e1000e"), Is.False);
    }

    [Test]
    public void Pcieport_BindsPcieBridgesOnly()
    {
        var f = new PciFixture();
        var port = new PciePort(f.Machine, 0, 0, 1, 0);
        var legacy = new PciDevice(f.Machine, 0, 0, 2, 0, new PciIdentity(0x8086, 0x244e, 0, 0, 0x060401));
        Assert.That(f.Machine.Pci.RegisterDriver(new PcieportDriver()), Is.Zero);
        f.Machine.Pci.Add(port);
        f.Machine.Pci.Add(legacy);

        Assert.That(port.Driver?.Name, Is.EqualTo("pcieport"));
        Assert.That(port.Driver!.DriverManagedDma, Is.True);
        Assert.That(legacy.Driver, Is.Null, "a conventional PCI bridge is not a PCIe port");
        Assert.That(f.Sys.Write("/sys/bus/pci/drivers/pcieport/bind", "0000:00:02.0"), Is.EqualTo(Errno.ENODEV.Negative()));
    }

    [Test]
    public void UnregisteringADriver_RemovesItsFilesBeforeItsRemoveRuns_AndRefusesNewBinds()
    {
        var f = new PciFixture();
        string[] filesDuringRemove = [];
        f.Host.OnRemove = _ => filesDuringRemove = [.. f.Sys.List("/sys/bus/pci/drivers/e1000e") ?? []];

        f.Machine.Pci.UnregisterDriver(f.Host);

        Assert.That(f.Host.RemoveCount, Is.EqualTo(1));
        Assert.That(filesDuringRemove, Has.None.AnyOf("bind", "unbind", "new_id", "remove_id", "uevent"), "bus_remove_driver() removes them before driver_detach()");
        Assert.That(f.Sys.Exists("/sys/bus/pci/drivers/e1000e"), Is.False);
        Assert.That(f.Machine.Pci.DeviceDriverAttach(f.Host, f.Device), Is.EqualTo(Errno.ENODEV.Negative()), "a driver that is no longer registered binds nothing");
        Assert.That(f.Device.Driver, Is.Null);
        Assert.That(f.Host.ProbeCount, Is.EqualTo(1));
    }

    [Test]
    public void RemovingADevice_RemovesItsAttributesBeforeItsDriverIsReleased()
    {
        var f = new PciFixture();
        string dir = f.Device.SysfsDir!.FullPath;
        IReadOnlyList<string>? entriesDuringRemove = null;
        f.Host.OnRemove = _ => entriesDuringRemove = f.Sys.List(dir);

        f.Machine.Pci.Remove(f.Device);

        Assert.That(f.Host.RemoveCount, Is.EqualTo(1));
        Assert.That(entriesDuringRemove, Has.None.AnyOf("vendor", "config", "driver_override", "uevent", "subsystem"), "device_del() removes them before bus_remove_device() releases the driver");
        Assert.That(entriesDuringRemove, Is.Not.Null, "the directory itself goes only after REMOVED_DEVICE");
        Assert.That(f.Sys.Exists(dir), Is.False);
    }

    private sealed class PciePort(SimMachine m, int domain, int bus, int slot, int fn)
        : PciDevice(m, domain, bus, slot, fn, new PciIdentity(0x8086, 0x7c90, 0, 0, 0x060400))
    {
        public override bool IsPcieport => true;
    }
}

[TestFixture(SchedulerMode.Real)]
[TestFixture(SchedulerMode.Controlled)]
public sealed class ConcurrentUnbindTests(SchedulerMode mode)
{
    [Test]
    public void TwoUnbindWriters_SerialiseOnDeviceLock_WhileRemoveBlocks()
    {
        var f = new PciFixture(mode);
        f.Sys.Write(PciFixture.Drv("e1000e", "unbind"), PciFixture.Bdf);
        f.Sys.Write(PciFixture.Dev("driver_override"), "vfio-pci");
        f.Sys.Write(PciFixture.Drv("vfio-pci", "bind"), PciFixture.Bdf);
        SimKernel k = f.Machine.Kernel;
        long a = 0, b = 0;
        int removes = 0;
        string? bWaitedOn = null;

        RunResult r = k.Run(() =>
        {
            var inRemove = new Completion(k, "in_remove");
            var release = new Completion(k, "release_device");
            f.Vfio.OnRemove = _ =>
            {
                Interlocked.Increment(ref removes);
                inRemove.Complete();
                release.Wait(); // vfio_unregister_group_dev would wait for users here.
            };
            KTask writerA = k.Spawn("unbind-a", () => a = f.Sys.Write(PciFixture.Drv("vfio-pci", "unbind"), PciFixture.Bdf));
            inRemove.Wait();
            KTask writerB = k.Spawn("unbind-b", () => b = f.Sys.Write(PciFixture.Drv("vfio-pci", "unbind"), PciFixture.Bdf));
            Runs.SpinUntil(() => writerB.State == TaskState.Blocked && writerB.WaitObject is KMutex);
            bWaitedOn = writerB.WaitObject!.Name;
            Invariant.Check(f.Device.Driver is not null, "the device stays bound while remove runs");
            release.Complete();
            writerA.Join();
            writerB.Join();
        });

        Runs.AssertPassed(r);
        Assert.That(bWaitedOn, Is.EqualTo($"device[{PciFixture.Bdf}].mutex"));
        Assert.That(a, Is.EqualTo(13));
        Assert.That(b, Is.EqualTo(13), "both writers saw the driver bound when they checked; the second finds nothing left to do");
        Assert.That(removes, Is.EqualTo(1));
        Assert.That(f.Device.Driver, Is.Null);
    }
}
