// Tests Vfio.Sim/Labs/Lab03EduDriver.cs: the reference driver (and the same driver written
// with the public API only, as examples/LabCourse has it) gets full marks; realistic mistakes
// — no unmap and no close, a virtual address given to the DMA engine, bus mastering off, MSI
// never enabled — fail the check they should, with a message that names the fix; grading is
// deterministic.

using LabCourse;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab03EduDriverTests
{
    private static Lab Lab => LabCatalog.Get(3);

    private static LabCheck Failed(LabGrade grade, string name)
    {
        LabCheck? c = grade.Checks.FirstOrDefault(c => c.Name == name);
        Assert.That(c, Is.Not.Null, $"no check named \"{name}\": {string.Join(", ", grade.Checks.Select(c => c.Name))}");
        Assert.That(c!.Passed, Is.False, grade.ToString());
        return c;
    }

    [Test]
    public void TheCatalogueHasLab3_WithItsHandout()
    {
        Assert.That(Lab.Slug, Is.EqualTo("edu-driver"));
        Assert.That(Lab.SolutionType, Is.EqualTo(typeof(EduDriverSolution)));
        Assert.That(Lab.Handout, Does.Contain("EduDriverSolution").And.Contain("What the grader checks"));
    }

    [Test]
    public void TheReferenceSolution_GetsFullMarks()
    {
        LabGrade g = Lab.Grade(Lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.Score, Is.EqualTo(g.MaxScore).And.EqualTo(85));
        Assert.That(g.Strace.Any(r => r.Request == "VFIO_IOMMU_MAP_DMA" && r.Return == 0), Is.True);
        Assert.That(g.Strace.Any(r => r.Request == "VFIO_IOMMU_UNMAP_DMA" && r.Return >= 0), Is.True);
    }

    [Test]
    public void TheDriverWrittenWithThePublicApi_GetsFullMarks()
    {
        LabGrade g = Lab.Grade(new EduDriver());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void ForgettingToUnmapAndClose_LeavesPagesPinnedAndFdsOpen_AndTheGradeSaysUnmap()
    {
        LabGrade g = Lab.Grade(new FlawedEduDriver(Flaw.NoCleanup));
        LabCheck pinned = Failed(g, "nothing pinned when the driver returns");
        Assert.That(pinned.Message, Does.Contain("VFIO_IOMMU_UNMAP_DMA").And.Contain("2 page(s) were still pinned"));
        LabCheck fds = Failed(g, "every fd closed");
        Assert.That(fds.Message, Does.Contain("a device fd from VFIO_GROUP_GET_DEVICE_FD").And.Contain("an eventfd"));
        Assert.That(g.Checks.Where(c => !c.Passed).Select(c => c.Name), Is.EquivalentTo(new[] { "nothing pinned when the driver returns", "every fd closed" }));
    }

    [Test]
    public void ProgrammingTheBuffersVirtualAddress_IsAnIommuFault_AndTheGradeSaysIova()
    {
        LabGrade g = Lab.Grade(new FlawedEduDriver(Flaw.VirtualAddress));
        LabCheck dma = Failed(g, "DMA to edu and back through the IOMMU");
        Assert.That(dma.Message, Does.Contain("the IOMMU blocked edu").And.Contain("virtual address").And.Contain("IOVA"));
        Assert.That(g.Checks.First(c => c.Name == "nothing pinned when the driver returns").Passed, Is.True, "the cleanup was right");
    }

    [Test]
    public void WithoutBusMastering_NoMsiIsSent_AndTheGradeSaysBusMaster()
    {
        LabGrade g = Lab.Grade(new FlawedEduDriver(Flaw.NoBusMaster));
        Assert.That(Failed(g, "the driver runs to completion").Message, Does.Contain("TimeoutException"));
        LabCheck irq = Failed(g, "completion MSIs delivered and consumed");
        Assert.That(irq.Message, Does.Contain("bus mastering was off").And.Contain("0x4"));
    }

    [Test]
    public void WithoutMsi_EduFallsBackToIntx_AndTheGradeSaysSetIrqs()
    {
        LabGrade g = Lab.Grade(new FlawedEduDriver(Flaw.NoMsi));
        LabCheck irq = Failed(g, "completion MSIs delivered and consumed");
        Assert.That(irq.Message, Does.Contain("INTx").And.Contain("VFIO_DEVICE_SET_IRQS").And.Contain("VFIO_PCI_MSI_IRQ_INDEX"));
    }

    [Test]
    public void GradingTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = Lab.Grade(new FlawedEduDriver(Flaw.VirtualAddress));
        LabGrade b = Lab.Grade(new FlawedEduDriver(Flaw.VirtualAddress));
        Assert.That(b.ToString(), Is.EqualTo(a.ToString()));
        Assert.That(string.Join("\n", b.Strace), Is.EqualTo(string.Join("\n", a.Strace)));
        Assert.That(a.Strace, Is.Not.Empty);
    }

    [Test]
    public void ASolutionOfAnotherLab_IsRefused()
        => Assert.That(() => Lab.Grade("not a driver"), Throws.ArgumentException);

    internal enum Flaw
    {
        NoCleanup,
        VirtualAddress,
        NoBusMaster,
        NoMsi,
    }

    /// <summary>The reference driver with one realistic mistake.</summary>
    private sealed class FlawedEduDriver(Flaw flaw) : EduDriverSolution
    {
        public override EduDriverResult Run(LabEnvironment env, EduAssignment assignment)
        {
            SimProcess p = env.Process;
            VfioSession edu = env.Sim.Open(p, env.Device!);
            try
            {
                edu.Device.Reset();
                if (flaw != Flaw.NoBusMaster)
                {
                    ushort command = edu.Device.ReadConfig16(PciRegs.Command);
                    edu.Device.WriteConfig16(PciRegs.Command, (ushort)(command | PciRegs.CommandMemory | PciRegs.CommandMaster));
                }

                VfioRegionMapping bar = edu.Device.MmapRegion(VfioPciIndex.Bar0, 0, 1 << 20);
                uint id = bar.Read32(0x00);
                bar.Write32(0x04, assignment.LivenessProbe);
                uint liveness = bar.Read32(0x04);
                int irq = p.Eventfd(0);
                if (flaw != Flaw.NoMsi)
                {
                    edu.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, irq);
                }

                bar.Write32(0x20, 0x80);
                bar.Write32(0x08, assignment.FactorialOperand);
                Wait(p, irq, bar);
                uint factorial = bar.Read32(0x08);

                UserBuffer buffer = VfioSim.Allocate(p, 0x2000);
                edu.Container.MapDma(buffer.Address, 0x10_0000, 0x2000);
                buffer.Write(0, assignment.Payload);
                ulong dmaAddress = flaw == Flaw.VirtualAddress ? buffer.Address : 0x10_0000;
                Dma(p, irq, bar, dmaAddress, 0x40000, assignment.Payload.Length, 0x5);
                Dma(p, irq, bar, 0x40000, dmaAddress + 0x1000, assignment.Payload.Length, 0x7);
                byte[] back = buffer.Read(0x1000, assignment.Payload.Length);
                if (flaw != Flaw.NoCleanup)
                {
                    edu.Container.UnmapDma(0x10_0000, 0x2000);
                    buffer.Dispose();
                    bar.Dispose();
                    p.Close(irq);
                }

                return new EduDriverResult(id, liveness, factorial, back);
            }
            finally
            {
                if (flaw != Flaw.NoCleanup)
                {
                    edu.Dispose();
                }
            }
        }

        private static void Dma(SimProcess p, int irq, VfioRegionMapping bar, ulong source, ulong destination, int count, ulong command)
        {
            bar.Write64(0x80, source);
            bar.Write64(0x88, destination);
            bar.Write64(0x90, (ulong)count);
            bar.Write64(0x98, command);
            Wait(p, irq, bar);
        }

        private static void Wait(SimProcess p, int irq, VfioRegionMapping bar)
        {
            Span<PollFd> fds = [new PollFd(irq, PollEvents.POLLIN)];
            if (p.Poll(fds, 10_000) != 1)
            {
                throw new TimeoutException("no interrupt from edu within 10 s");
            }

            Span<byte> count = stackalloc byte[8];
            p.Read(irq, count);
            bar.Write32(0x64, bar.Read32(0x24));
        }
    }
}
