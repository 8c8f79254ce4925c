// A machine with the mdev core loaded and a test parent registered on it, for the mdev
// core's tests: sysfs paths, the host helpers and the state a rejected write must leave alone.

using Vfio.Kernel;
using Vfio.Mdev;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Mdev;

internal sealed class MdevRig
{
    public MdevRig(KernelProfile? profile = null, TestMdevDriver? driver = null, MdevOptions? options = null, SchedulerMode mode = SchedulerMode.Controlled, ulong seed = 1, bool register = true, bool vfioPci = false)
    {
        VfioSimBuilder b = VfioSim.CreateBuilder().UseSeed(seed).UseScheduler(mode).UseProfile(profile ?? KernelProfile.Linux6_12).AddMdev(options);
        if (vfioPci)
        {
            b.AddVfioPci();
        }

        Sim = b.Build();
        Driver = driver ?? new TestMdevDriver();
        if (register)
        {
            Parent = TestMdevParent.Create(Sim.Machine, Driver);
        }
    }

    public VfioSim Sim { get; }

    public MdevCore Core => Sim.Mdev!;

    public TestMdevDriver Driver { get; }

    public TestMdevParent Parent { get; private set; } = null!;

    public SimKernel Kernel => Sim.Kernel;

    public Vfio.Platform.Sysfs.SysfsTree Fs => Sim.Machine.Sysfs;

    public string CreatePath(int type = 1) => Parent.TypePath(type) + "/create";

    public static string DevicePath(Guid uuid) => $"/sys/bus/mdev/devices/{uuid:D}";

    /// <summary>echo -n <paramref name="text"/> &gt; create: the write's result.</summary>
    public long WriteCreate(string text, int type = 1, SimProcess? caller = null) => Fs.Write(CreatePath(type), text, caller, newline: false);

    public long WriteRemove(Guid uuid, string text = "1\n", SimProcess? caller = null) => Fs.Write(DevicePath(uuid) + "/remove", text, caller, newline: false);

    public int Available(int type = 1) => int.Parse(Sim.SysfsRead(Parent.TypePath(type) + "/available_instances"), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>What a rejected write must leave as it was: devices, instances, bus members, sysfs entries, the parent's references.</summary>
    public string State()
    {
        var devices = string.Join(",", Core.Devices.Select(d => d.Name).Order(StringComparer.Ordinal));
        var bus = string.Join(",", Core.Bus.Devices.Select(d => d.Name).Order(StringComparer.Ordinal));
        var typeDevices = string.Join(",", Parent.Types.Select(t => string.Join("+", Fs.List(Parent.TypePath(int.Parse(t.SysfsName, System.Globalization.CultureInfo.InvariantCulture)) + "/devices") ?? [])));
        var children = string.Join(",", Fs.List(Parent.Dev.SysfsDir!.FullPath) ?? []);
        var groups = string.Join(",", Sim.Machine.Vfs.List("/dev/vfio") ?? []);
        return $"mdevs[{devices}] bus[{bus}] avail[{Parent.Parent.AvailableInstances}] typedevs[{typeDevices}] parentdir[{children}] devref[{Parent.Dev.ReferenceCount}] /dev/vfio[{groups}]";
    }
}
