// Start-up checks of the simulated machine, shown by `vfio-sim demo` next to the kernel
// runtime's: memory boots lazily, pinning behaves like long-term GUP, files release once,
// an eventfd wakes a sleeper across tasks, and the sysfs bind dance of the kernel's vfio
// selftests works with the kernel's errnos.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Platform;

/// <summary>Start-up checks of the machine layer.</summary>
public static class PlatformSelfTest
{
    private const Prot RW = Prot.PROT_READ | Prot.PROT_WRITE;
    private const MapFlags Anon = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;

    /// <summary>Runs every check on fresh machines of <paramref name="profile"/>.</summary>
    public static IReadOnlyList<SelfTestResult> RunAll(KernelProfile profile)
    {
        ArgumentNullException.ThrowIfNull(profile);
        return
        [
            SelfTest.Check("a 64 GiB machine boots without per-page metadata", () => LazyBoot(profile)),
            SelfTest.Check("long-term pins: runs, hugetlb folios, survival past exit", () => Pinning(profile)),
            SelfTest.Check("an eventfd write wakes a reader in another task", () => EventFdWake(profile)),
            SelfTest.Check("sysfs: unbind, driver_override, bind, with the kernel's errnos", () => BindDance(profile)),
        ];
    }

    private static SimMachine Machine(KernelProfile profile, MemoryConfig memory, SchedulerMode mode = SchedulerMode.Real)
        => new(new SimKernel(new KernelConfig { Mode = mode, Profile = profile }), new MachineConfig { Memory = memory });

    private static (bool, string) LazyBoot(KernelProfile profile)
    {
        SimMachine m = Machine(profile, new MemoryConfig { RamBytes = 64L << 30 });
        SimProcess p = m.CreateProcess("t");
        long a = p.Mmap(0, 256UL << 20, RW, Anon | MapFlags.MAP_POPULATE);
        long meta = m.Memory.MetadataBytes;
        bool ok = a > 0 && m.Memory.UsedPages == 65536 && meta <= (16 * m.Memory.UsedPages) + (1L << 20);
        return (ok, string.Create(CultureInfo.InvariantCulture, $"{m.Memory.TotalRamPages} frames; 256 MiB populated, {meta >> 20} MiB of frame metadata"));
    }

    private static (bool, string) Pinning(KernelProfile profile)
    {
        SimMachine m = Machine(profile, new MemoryConfig { RamBytes = 8L << 30, HugePages2M = 4 });
        SimProcess p = m.CreateProcess("qemu");
        ulong small = (ulong)p.Mmap(0, 64 * 4096, RW, Anon);
        ulong huge = (ulong)p.Mmap(0, 8 << 20, RW, Anon | MapFlags.MAP_HUGETLB);
        var runs = new PfnRun[128];
        long n1 = p.Mm.PinUserPages(small, 64, GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE, runs, out int smallRuns);
        PfnRun[] keptSmall = runs[..smallRuns];
        long n2 = p.Mm.PinUserPages(huge, 2048, GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE, runs, out int hugeRuns);
        PfnRun[] keptHuge = runs[..hugeRuns];
        p.Exit();
        long pinnedAfterExit = m.Memory.PinnedPages;
        m.Memory.Unpin(keptSmall, dirty: true);
        m.Memory.Unpin(keptHuge, dirty: true);
        bool ok = n1 == 64 && smallRuns == 64 && n2 == 2048 && hugeRuns == 1 && pinnedAfterExit == 2112
            && m.Memory.PinnedPages == 0 && MemoryInvariants.Check(m).Count == 0;
        return (ok, string.Create(CultureInfo.InvariantCulture, $"64 scattered pages in {smallRuns} runs; 8 MiB hugetlb in {hugeRuns} run; {pinnedAfterExit} pins held past exit, 0 after unpin"));
    }

    private static (bool, string) EventFdWake(KernelProfile profile)
    {
        SimMachine m = Machine(profile, new MemoryConfig { RamBytes = 1L << 30 }, SchedulerMode.Controlled);
        SimProcess p = m.CreateProcess("t");
        ulong got = 0;
        RunResult r = m.Kernel.Run(() =>
        {
            int fd = p.Eventfd(0);
            KTask reader = p.SpawnThread("reader", () =>
            {
                byte[] buf = new byte[8];
                p.Read(fd, buf);
                got = BitConverter.ToUInt64(buf);
            });
            while (reader.State != TaskState.Blocked)
            {
                KTask.Schedule();
            }

            p.Write(fd, BitConverter.GetBytes(7UL));
            reader.Join();
        });
        return (r.Passed && got == 7, r.Passed ? string.Create(CultureInfo.InvariantCulture, $"reader slept, woke with 7 ({r.Steps} scheduling steps)") : r.Describe());
    }

    private static (bool, string) BindDance(KernelProfile profile)
    {
        SimMachine m = Machine(profile, new MemoryConfig { RamBytes = 1L << 30 });
        var host = new HostPciDriver("e1000e", new PciDeviceId(0x8086, 0x10d3));
        m.Pci.RegisterDriver(host);
        m.Pci.RegisterDriver(new PciStubDriver());
        m.Pci.Add(new PciDevice(m, 0, 1, 0, 0, new PciIdentity(0x8086, 0x10d3, 0, 0, 0x020000)));
        const string dev = "0000:01:00.0";
        var steps = new List<long>
        {
            m.Sysfs.Write("/sys/bus/pci/drivers/e1000e/bind", dev),
            m.Sysfs.Write("/sys/bus/pci/drivers/pci-stub/bind", dev),
            m.Sysfs.Write("/sys/bus/pci/drivers/e1000e/unbind", dev),
            m.Sysfs.Write($"/sys/bus/pci/devices/{dev}/driver_override", "pci-stub"),
            m.Sysfs.Write("/sys/bus/pci/drivers/pci-stub/bind", dev),
        };
        string? driver = m.Sysfs.ReadLink($"/sys/bus/pci/devices/{dev}/driver");
        bool ok = steps.SequenceEqual([Errno.EBUSY.Negative(), Errno.ENODEV.Negative(), 13L, 9L, 13L]) && driver == "../../../bus/pci/drivers/pci-stub";
        return (ok, $"bind while bound: {ErrnoExtensions.FromReturn(steps[0]).Name()}; bind a non-matching driver: {ErrnoExtensions.FromReturn(steps[1]).Name()}; unbind, override, bind: driver -> {driver}");
    }
}
