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
            SelfTest.Check("default machine: IOMMU groups formed from ACS, bridges and functions", () => DefaultGroups(profile)),
            SelfTest.Check("edu DMA through the IOMMU: a fault while unmapped, the bytes once mapped", () => EduThroughIommu(profile)),
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

    private static SimMachine DefaultMachine(KernelProfile profile)
        => Vfio.Platform.Machine.MachineBuilder.Default(new SimKernel(new KernelConfig { Profile = profile }));

    private static (bool, string) DefaultGroups(KernelProfile profile)
    {
        SimMachine m = DefaultMachine(profile);
        string Members(string dev) => string.Join(",", m.Pci.Find(dev)!.IommuGroup!.Devices.Select(d => d.Name[5..]).Order(StringComparer.Ordinal));
        string edu = Members("0000:01:00.0"), pair = Members("0000:02:00.1"), bridged = Members("0000:04:02.0");
        bool ok = edu == "01:00.0" && pair == "02:00.0,02:00.1" && bridged == "03:00.0,04:01.0,04:02.0" && m.Iommu!.Groups.Count >= 13;
        return (ok, $"{m.Iommu!.Groups.Count} groups; edu: [{edu}]; two functions without ACS: [{pair}]; behind the PCIe-to-PCI bridge: [{bridged}]");
    }

    private static (bool, string) EduThroughIommu(KernelProfile profile)
    {
        SimMachine m = DefaultMachine(profile);
        var edu = (Devices.EduDevice)m.Pci.Find("0000:01:00.0")!;
        Iommu.IommuCore iommu = m.Iommu!;
        m.Sysfs.Write("/sys/bus/pci/drivers/edu/unbind", edu.Name);
        Iommu.IommuGroup g = edu.IommuGroup!;
        object owner = new();
        int claim = iommu.GroupClaimDmaOwner(g, owner);
        Iommu.IommuDomain domain = iommu.DomainAlloc();
        int attach = iommu.AttachGroup(domain, g);
        edu.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
        long bar = edu.ResourceStart(0);
        const ulong iova = 0x100000;
        const long phys = 0x8000000;
        byte[] pattern = [0x76, 0x66, 0x69, 0x6f, 0x2d, 0x73, 0x69, 0x6d];
        m.Memory.Write(phys, pattern);
        byte[] reg = new byte[8];
        void Reg(int off, ulong v)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(reg, v);
            m.Memory.Write(bar + off, reg);
        }

        int Dma()
        {
            Reg(Devices.EduDevice.RegDmaSource, iova);
            Reg(Devices.EduDevice.RegDmaDestination, Devices.EduDevice.DmaBufferStart);
            Reg(Devices.EduDevice.RegDmaCount, (ulong)pattern.Length);
            Reg(Devices.EduDevice.RegDmaCommand, Devices.EduDevice.DmaCmdStart);
            long transfers = edu.DmaTransfers + edu.DmaErrors;
            m.Kernel.Run("poll", () =>
            {
                while (edu.DmaTransfers + edu.DmaErrors == transfers)
                {
                    KTask.Msleep(10);
                }
            });
            return edu.LastDmaResult;
        }

        int unmapped = Dma();
        long faults = iommu.Hardware.Faults.Total;
        int map = domain.Map(iova, phys, 4096, Iommu.IommuProt.Read | Iommu.IommuProt.Write);
        int mapped = Dma();
        bool arrived = edu.CopyBuffer().AsSpan(0, pattern.Length).SequenceEqual(pattern);
        bool ok = claim == 0 && attach == 0 && map == 0 && unmapped == Errno.EFAULT.Negative() && faults == 1 && mapped == 0 && arrived;
        return (ok, $"unmapped: {ErrnoExtensions.FromReturn(unmapped).Name()} with {faults} fault logged; mapped: {(arrived ? "8 bytes arrived" : "bytes missing")}");
    }
}
