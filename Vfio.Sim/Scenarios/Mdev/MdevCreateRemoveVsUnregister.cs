// Race 15 of docs/races.md (mdev_core.c, v5.2 "vfio/mdev: Synchronize device create/remove
// with parent removal" and the two create/remove sequence fixes before it): threads create
// and remove mdevs on a parent while another thread unregisters it. With the fix every
// create answers 0, EEXIST or ENODEV, every remove 0, ENODEV or EAGAIN, no mdev survives
// its parent and the parent's instances all come back; nothing WARNs. With
// MdevDesign.SynchronizeWithParentRemoval off (the v5.1 core) a create that slips past the
// unregistration's sweep leaves an mdev on a freed parent — removing it later is a
// use-after-free — and a remove racing the sweep drops the device twice.

using System.Collections.Concurrent;
using System.Text;
using Vfio.Core;
using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim.Drivers;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Mdev;

/// <summary><c>mdev-create-remove-vs-unregister</c>: mdev creation and removal racing the parent's unregistration.</summary>
internal sealed class MdevCreateRemoveVsUnregister : Scenario
{
    private const int MaxInstances = 8;

    /// <inheritdoc/>
    public override string Name => "mdev-create-remove-vs-unregister";

    /// <inheritdoc/>
    public override string Description =>
        "Two threads create mdevs (one UUID twice) and two remove them while another unregisters their parent: every create " +
        "answers 0, EEXIST or ENODEV, every remove 0, ENODEV or EAGAIN, no mdev outlives the parent, all instances come back.";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Race;

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "15",
        Kernels = "≤ v5.1",
        FixCommits = "5715c4dd66a3 \"vfio/mdev: Synchronize device create/remove with parent removal\" (v5.2), with \"vfio/mdev: Improve the create/remove sequence\" and \"vfio/mdev: Avoid creating sysfs remove file on stale device removal\"",
        FixSwitch = "MdevDesign.SynchronizeWithParentRemoval = false",
        Detectors = [RaceDetector.UseAfterFree, RaceDetector.Invariant],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseMdevDesign(d => d with { SynchronizeWithParentRemoval = on });
    }

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddMdev();
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        MdevCore core = sim.Mdev!;
        var driver = new RaceDriver();
        Check(core.RegisterDriver(driver) == 0, "mdev_register_driver(mrace) succeeds", "it failed");
        var cls = DeviceClass.Create(sim.Machine, "mrace");
        var dev = new SimDevice(sim.Machine, "mrace");
        Check(cls.DeviceRegister(dev) == 0, "the parent device registers", "it failed");
        var parent = new MdevParent();
        MdevType[] types = [new MdevType("1"), new MdevType("2")];
        int ret = core.RegisterParent(parent, dev, driver, types);
        Check(ret == 0, "mdev_register_parent succeeds", ErrnoExtensions.FromReturn(ret).Describe());

        // Two mdevs to remove, and the UUIDs the creators write (the second creator repeats one).
        Guid existing1 = sim.CreateMdev("mrace", "mrace-1");
        Guid existing2 = sim.CreateMdev("mrace", "mrace-2");
        Guid[] fresh = [NewUuid(sim), NewUuid(sim), NewUuid(sim)];

        SimProcess admin = sim.Spawn("admin");
        string typesDir = $"{dev.SysfsDir!.FullPath}/mdev_supported_types";
        int create1 = admin.Open($"{typesDir}/mrace-1/create", OpenFlags.O_WRONLY);
        int create2 = admin.Open($"{typesDir}/mrace-2/create", OpenFlags.O_WRONLY);
        int remove1 = admin.Open($"/sys/bus/mdev/devices/{existing1:D}/remove", OpenFlags.O_WRONLY);
        int remove2 = admin.Open($"/sys/bus/mdev/devices/{existing2:D}/remove", OpenFlags.O_WRONLY);
        Check(create1 >= 0 && create2 >= 0 && remove1 >= 0 && remove2 >= 0, "the create and remove files open", $"fds {create1} {create2} {remove1} {remove2}");

        var creates = new ConcurrentQueue<(Guid Uuid, long Rc)>();
        var removes = new ConcurrentQueue<(string What, long Rc)>();
        KTask[] threads =
        [
            admin.SpawnThread("create-a", () =>
            {
                creates.Enqueue((fresh[0], Write(admin, create1, fresh[0])));
                creates.Enqueue((fresh[1], Write(admin, create1, fresh[1])));
            }),
            admin.SpawnThread("create-b", () =>
            {
                creates.Enqueue((fresh[1], Write(admin, create2, fresh[1])));
                creates.Enqueue((fresh[2], Write(admin, create2, fresh[2])));
            }),
            admin.SpawnThread("remove-a", () =>
            {
                removes.Enqueue((existing1.ToString("D"), admin.Write(remove1, "1\n"u8)));

                // The mdev create-a makes, if it is there (still) by now.
                int fd = admin.Open($"/sys/bus/mdev/devices/{fresh[0]:D}/remove", OpenFlags.O_WRONLY);
                if (fd >= 0)
                {
                    removes.Enqueue((fresh[0].ToString("D"), admin.Write(fd, "1\n"u8)));
                    admin.Close(fd);
                }
            }),
            admin.SpawnThread("remove-b", () => removes.Enqueue((existing2.ToString("D"), admin.Write(remove2, "1\n"u8)))),
            admin.SpawnThread("unregister", () => core.UnregisterParent(parent)),
        ];
        foreach (KTask t in threads)
        {
            t.Join();
        }

        foreach (int fd in new[] { create1, create2, remove1, remove2 })
        {
            admin.Close(fd);
        }

        string created = string.Join(", ", creates.Select(c => $"{c.Uuid:D}: {Describe(c.Rc, 36)}"));
        string removed = string.Join(", ", removes.Select(r => $"{r.What}: {Describe(r.Rc, 2)}"));
        context.Step("the writes' answers", () => $"creates: {created}; removes: {removed}");
        Check(creates.All(c => c.Rc == 36 || c.Rc == Errno.EEXIST.Negative() || c.Rc == Errno.ENODEV.Negative()),
            "every create answers its byte count, EEXIST or ENODEV", created);
        Check(removes.All(r => r.Rc == 2 || r.Rc == Errno.ENODEV.Negative() || r.Rc == Errno.EAGAIN.Negative()),
            "every remove answers its byte count, ENODEV or EAGAIN", removed);

        // Whatever is left under the parent now lives on a parent that is gone; removing it
        // is how user space would meet it again.
        MdevDevice[] orphans = [.. core.Devices.Where(m => ReferenceEquals(m.MdevParent, parent))];
        foreach (MdevDevice orphan in orphans)
        {
            sim.Machine.Sysfs.Write($"/sys/bus/mdev/devices/{orphan.Name}/remove", "1", admin);
        }

        Detect(RaceDetector.UseAfterFree, orphans.Length == 0,
            "no mdev outlives its parent's unregistration",
            $"{string.Join(", ", orphans.Select(o => o.Name))} outlived it (use-after-free of the parent: a create ran while it unregistered); creates: {created}; removes: {removed}");
        Check(!core.Bus.Devices.Any(d => ReferenceEquals(d.Parent, dev)), "no device is left on the mdev bus under the parent", "one is");
        CheckEqual(parent.AvailableInstances, MaxInstances, "the parent's available_instances after every release");
        CheckEqual(driver.Live, 0, "vfio devices the vendor driver still holds");
        CheckEqual(parent.IsRegistered, false, "the parent is registered");
        core.UnregisterDriver(driver);
        cls.DeviceUnregister(dev);
    }

    private static long Write(SimProcess p, int fd, Guid uuid) => p.Write(fd, Encoding.ASCII.GetBytes(uuid.ToString("D")));

    private static string Describe(long rc, long ok) => rc == ok ? "ok" : rc < 0 ? ErrnoExtensions.FromReturn(rc).ToString() : rc.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static Guid NewUuid(VfioSim sim)
    {
        Span<byte> b = stackalloc byte[16];
        BitConverter.TryWriteBytes(b, sim.Kernel.Random.NextU64());
        BitConverter.TryWriteBytes(b[8..], sim.Kernel.Random.NextU64());
        return new Guid(b);
    }

    // A vendor driver of the mtty kind without a device model: probe registers an
    // emulated-IOMMU vfio device, remove unregisters it.
    private sealed class RaceDriver : MdevDriver
    {
        private readonly SampleVfioOps _ops = new("mrace");
        private readonly ConcurrentDictionary<MdevDevice, VfioDevice> _devices = new();

        public RaceDriver()
            : base("mrace")
        {
        }

        public override string DeviceApi => "vfio-pci";

        public override int MaxInstances => MdevCreateRemoveVsUnregister.MaxInstances;

        public int Live => _devices.Count;

        public override int Probe(MdevDevice mdev)
        {
            VfioDevice? vdev = VfioDevice.Alloc(mdev, _ops, static () => new Device(), out int err);
            if (vdev is null)
            {
                return err;
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
            if (_devices.TryRemove(mdev, out VfioDevice? vdev))
            {
                vdev.UnregisterGroupDev();
                vdev.PutDevice();
            }
        }

        private sealed class Device : VfioDevice
        {
        }
    }
}
