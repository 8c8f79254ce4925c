// Tests the embedded default machine (Vfio.Platform/Machine/default-machine.json) built by
// MachineBuilder: every topology shape docs/platform.md lists is there, grouped as the
// kernel groups it, with the drivers bound at boot, and the edu device's DMA goes through
// the IOMMU.

using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Tests.Platform.Devices;

namespace Vfio.Tests.Platform.Machine;

[TestFixture]
public sealed class DefaultMachineTests
{
    private static string[] Members(SimMachine m, int id)
        => [.. m.Iommu!.Groups.Single(g => g.Id == id).Devices.Select(d => d.Name).Order(StringComparer.Ordinal)];

    [Test]
    public void TheDefaultMachine_HasTheIssuesShapes_InTheGroupsTheKernelWouldForm()
    {
        SimMachine m = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        // Groups 0-12 are fixed; root ports added after slot 6 get the ids after them, in probe order.
        Assert.That(m.Iommu!.Groups.Select(g => g.Id).Take(13), Is.EqualTo(Enumerable.Range(0, 13)));
        Assert.That(Members(m, 0), Is.EqualTo(new[] { "0000:00:00.0" }));
        Assert.That(Members(m, 2), Is.EqualTo(new[] { "0000:01:00.0" }), "edu alone behind an ACS root port");
        Assert.That(Members(m, 4), Is.EqualTo(new[] { "0000:02:00.0", "0000:02:00.1" }), "two functions without ACS");
        Assert.That(Members(m, 6), Is.EqualTo(new[] { "0000:03:00.0", "0000:04:01.0", "0000:04:02.0" }), "the PCIe-to-PCI bridge and what is behind it");
        Assert.That(Members(m, 8), Is.EqualTo(new[] { "0000:05:00.0" }));
        Assert.That(Members(m, 10), Is.EqualTo(new[] { "0000:06:00.0" }));
        Assert.That(Members(m, 12), Is.EqualTo(new[] { "0000:07:00.0" }), "the peer-to-peer target, appended last");
        Assert.That(m.Pci.Find("0000:07:00.0")!.ResourceLength(2), Is.EqualTo(1L << 30), "a 1 GiB BAR");
        Assert.That(m.Pci.Find("0000:07:00.0")!.Bars[2]!.Prefetchable, Is.True);
        foreach (int port in new[] { 1, 3, 5, 7, 9, 11 })
        {
            Assert.That(Members(m, port), Has.Length.EqualTo(1));
            Assert.That(m.Pci.Find(Members(m, port)[0]), Is.InstanceOf<PciBridge>());
        }
    }

    [Test]
    public void TheDefaultMachine_BindsItsHostDriversAtBoot_AndThePortsToPcieport()
    {
        SimMachine m = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        Assert.That(m.Pci.Find("0000:01:00.0")!.Driver?.Name, Is.EqualTo("edu"));
        Assert.That(m.Pci.Find("0000:02:00.0")!.Driver?.Name, Is.EqualTo("igb"));
        Assert.That(m.Pci.Find("0000:05:00.0")!.Driver?.Name, Is.EqualTo("e1000e"));
        Assert.That(m.Pci.Find("0000:06:00.0")!.Driver?.Name, Is.EqualTo("nvme"));
        Assert.That(m.Pci.Find("0000:00:01.0")!.Driver?.Name, Is.EqualTo("pcieport"));
        Assert.That(m.Sysfs.ReadLink("/sys/bus/pci/devices/0000:05:00.0/driver"), Does.EndWith("drivers/e1000e"));

        // A host driver counts as a DMA user of its group; pcieport (driver_managed_dma) does not.
        Assert.That(m.Pci.Find("0000:01:00.0")!.IommuGroup!.OwnerCount, Is.EqualTo(1));
        Assert.That(m.Pci.Find("0000:00:01.0")!.IommuGroup!.OwnerCount, Is.Zero);
        Assert.That(m.Pci.Find("0000:02:00.0")!.IommuGroup!.OwnerCount, Is.EqualTo(2), "igb binds both functions of the card");
    }

    [Test]
    public void TheDefaultMachine_HasTheDevicesItDescribes()
    {
        SimMachine m = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        Assert.That(m.Pci.Find("0000:01:00.0"), Is.InstanceOf<EduDevice>());
        var nic = (NicDevice)m.Pci.Find("0000:05:00.0")!;
        Assert.That(nic.MsixVectors, Is.GreaterThan(0));
        Assert.That(nic.Bars[2]!.Kind, Is.EqualTo(PciBarKind.Memory64));
        Assert.That(nic.Bars[2]!.Prefetchable, Is.True);
        Assert.That(m.Pci.Find("0000:04:01.0")!.ConfigSize, Is.EqualTo(256), "behind the PCIe-to-PCI bridge is conventional PCI");
        Assert.That(m.Sysfs.Read("/sys/bus/pci/devices/0000:01:00.0/vendor"), Is.EqualTo("0x1234\n"));
        Assert.That(m.Sysfs.Read("/sys/bus/pci/devices/0000:01:00.0/reset_method"), Is.EqualTo("bus\n"), "edu has no FLR or PM; it is alone below its port");
        Assert.That(m.Sysfs.Exists("/sys/bus/pci/devices/0000:04:02.0/reset"), Is.False, "a function without a reset method has no reset file");
    }

    [Test]
    public void BarsOfTheDefaultMachine_AreNaturallyAlignedAndDisjoint()
    {
        SimMachine m = MachineBuilder.Default(Runs.Kernel(SchedulerMode.Real));
        var ranges = new List<(long Start, long End, string Who)>();
        foreach (PciDevice d in m.Pci.Devices.Cast<PciDevice>())
        {
            foreach (PciBar? b in d.Bars)
            {
                if (b is null || b.Kind == PciBarKind.Io)
                {
                    continue;
                }

                Assert.That(b.ResourceStart % b.Size, Is.Zero, $"{d.Name} BAR {b.Index}");
                ranges.Add((b.ResourceStart, b.ResourceStart + b.Size, $"{d.Name} BAR {b.Index}"));
            }
        }

        ranges.Sort();
        for (int i = 1; i < ranges.Count; i++)
        {
            Assert.That(ranges[i].Start, Is.GreaterThanOrEqualTo(ranges[i - 1].End), $"{ranges[i].Who} overlaps {ranges[i - 1].Who}");
        }
    }

    [TestCase(SchedulerMode.Real)]
    [TestCase(SchedulerMode.Controlled)]
    public void EduDma_FaultsInTheIommuWithNothingMapped_AndArrivesOnceMapped(SchedulerMode mode)
    {
        SimKernel k = Runs.Kernel(mode, seed: 3);
        SimMachine m = MachineBuilder.Default(k);
        var edu = (EduDevice)m.Pci.Find("0000:01:00.0")!;
        IommuCore iommu = m.Iommu!;
        RunResult r = k.Run("main", () =>
        {
            // Take the device from its host driver and the group for "user space".
            Assert.That(m.Sysfs.Write("/sys/bus/pci/drivers/edu/unbind", edu.Name), Is.GreaterThan(0));
            IommuGroup g = edu.IommuGroup!;
            Assert.That(iommu.GroupClaimDmaOwner(g, this), Is.Zero);
            IommuDomain domain = iommu.DomainAlloc();
            Assert.That(iommu.AttachGroup(domain, g), Is.Zero);
            edu.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
            long bar = edu.ResourceStart(0);

            // RAM → device buffer from an unmapped IOVA: a recorded fault, nothing copied.
            const ulong iova = 0x100000;
            Cpu.Write64(m, bar + EduDevice.RegDmaSource, iova);
            Cpu.Write64(m, bar + EduDevice.RegDmaDestination, EduDevice.DmaBufferStart);
            Cpu.Write64(m, bar + EduDevice.RegDmaCount, 64);
            Cpu.Write64(m, bar + EduDevice.RegDmaCommand, EduDevice.DmaCmdStart);
            Cpu.PollMsleep(() => (Cpu.Read64(m, bar + EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) == 0);
            Assert.That(edu.LastDmaResult, Is.EqualTo(Errno.EFAULT.Negative()));
            IommuFault fault = iommu.Hardware.Faults.Snapshot()[^1];
            Assert.That((fault.Device, fault.Iova, fault.Reason), Is.EqualTo((edu.Name, iova, IommuFaultReason.NotPresent)));

            // Map a page holding a pattern and run the same DMA: the bytes arrive.
            const long phys = 0x4000000;
            byte[] pattern = Cpu.Pattern(64, 5);
            m.Memory.Write(phys, pattern);
            Assert.That(domain.Map(iova, phys, 4096, IommuProt.Read | IommuProt.Write), Is.Zero);
            Cpu.Write64(m, bar + EduDevice.RegDmaCommand, EduDevice.DmaCmdStart);
            Cpu.PollMsleep(() => (Cpu.Read64(m, bar + EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) == 0);
            Assert.That(edu.LastDmaResult, Is.Zero);
            Assert.That(edu.CopyBuffer()[..64], Is.EqualTo(pattern));

            // Unmap (one flush) and the device faults again: no stale translation survives.
            Assert.That(domain.Unmap(iova, 4096), Is.EqualTo(4096));
            Cpu.Write64(m, bar + EduDevice.RegDmaCommand, EduDevice.DmaCmdStart);
            Cpu.PollMsleep(() => (Cpu.Read64(m, bar + EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) == 0);
            Assert.That(edu.LastDmaResult, Is.EqualTo(Errno.EFAULT.Negative()));

            iommu.DetachGroup(domain, g);
            domain.Free();
            iommu.GroupReleaseDmaOwner(g);
        });
        Runs.AssertPassed(r);
    }
}
