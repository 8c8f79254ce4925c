// Tests Vfio.Sim/Labs/Lab02DmaMapping.cs: the reference earns every point; realistic
// mistakes (never unmapping, unmapping half of the mapping or the wrong IOVA, a read-only
// mapping, fds left open, a map before SET_IOMMU) each fail the check they should, with a
// message that names what the kernel did; and a grade is deterministic, strace included.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab02DmaMappingTests
{
    private static readonly Lab02DmaMapping Lab = new();

    [Test]
    public void TheReferenceSolution_EarnsEveryPoint()
    {
        LabGrade g = Lab.Grade(Lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, LabCatalog.ScoreTable(g));
        Assert.That(g.Score, Is.EqualTo(100));
        Assert.That(g.Strace.Select(r => r.Request), Does.Contain("VFIO_IOMMU_MAP_DMA").And.Contain("VFIO_IOMMU_UNMAP_DMA"));
    }

    [Test]
    public void TheLab_IsInTheCatalogue_WithItsHandout()
    {
        Assert.That(LabCatalog.Get(2), Is.InstanceOf<Lab02DmaMapping>());
        Assert.That(Lab.Handout, Does.StartWith("# Lab 2: container, mapping and the IOMMU fault after unmap"));
    }

    [Test]
    public void ASolutionThatNeverUnmaps_FailsTheUnmapAndFaultChecks_SayingThePagesAreStillPinned()
    {
        LabGrade g = Lab.Grade(new NeverUnmaps());
        LabCheck unmap = Failed(g, "UNMAP_DMA releases the mapping");
        Assert.That(unmap.Message, Does.Contain("VFIO_IOMMU_UNMAP_DMA was never called").And.Contain("16 pages").And.Contain("pinned"));
        LabCheck fault = Failed(g, "edu's DMA after the unmap faults");
        Assert.That(fault.Message, Does.Contain("still succeeded after Unmap"));
        Assert.That(g.Score, Is.EqualTo(70));
    }

    [Test]
    public void ASolutionThatUnmapsHalfTheMapping_FailsWithTheKernelsEinval()
    {
        LabGrade g = Lab.Grade(new UnmapsHalf());
        LabCheck unmap = Failed(g, "UNMAP_DMA releases the mapping");
        Assert.That(unmap.Message, Does.Contain("VFIO_IOMMU_UNMAP_DMA").And.Contain("EINVAL").And.Contain("cut a mapping in two"));
        Failed(g, "edu's DMA after the unmap faults");
    }

    [Test]
    public void ASolutionThatUnmapsTheWrongIova_SucceedsAtUnmappingNothing_AndIsToldSo()
    {
        LabGrade g = Lab.Grade(new UnmapsWrongIova());
        LabCheck unmap = Failed(g, "UNMAP_DMA releases the mapping");
        Assert.That(unmap.Message, Does.Contain("unmaps nothing").And.Contain("0x100000"));
    }

    [Test]
    public void AReadOnlyMapping_FailsTheDevicesWrite_WithAPermissionFaultAndTheWriteFlagNamed()
    {
        LabGrade g = Lab.Grade(new ReadOnlyMapping());
        Assert.That(g.Checks.Single(c => c.Name == "edu reads the buffer by DMA").Passed, Is.True);
        LabCheck write = Failed(g, "edu writes into the buffer by DMA");
        Assert.That(write.Message, Does.Contain("EFAULT").And.Contain("Permission").And.Contain("VFIO_DMA_MAP_FLAG_WRITE"));
    }

    [Test]
    public void ASolutionThatLeavesTheGroupOpen_FailsTheCloseCheck_NamingTheFd()
    {
        LabGrade g = Lab.Grade(new LeavesGroupOpen());
        LabCheck close = Failed(g, "Close closes every fd");
        Assert.That(close.Message, Does.Contain("/dev/vfio/2"));
        Assert.That(g.Score, Is.EqualTo(90));
    }

    [Test]
    public void ASolutionThatMapsBeforeSetIommu_IsToldTheKernelsAnswerAndTheOrder()
    {
        LabGrade g = Lab.Grade(new MapsBeforeSetIommu());
        LabCheck container = Failed(g, "the group is in a container with a type1 IOMMU");
        Assert.That(container.Message, Does.Contain("VFIO_IOMMU_MAP_DMA").And.Contain("VFIO_SET_IOMMU"));
        Assert.That(g.Checks.Single(c => c.Name == "edu's DMA after the unmap faults").Message, Does.StartWith("not checked"));
        Assert.That(g.Score, Is.EqualTo(15), LabCatalog.ScoreTable(g));
    }

    [Test]
    public void GradingTheSameSolutionTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = Lab.Grade(new NeverUnmaps());
        LabGrade b = Lab.Grade(new NeverUnmaps());
        Assert.That(LabCatalog.ScoreTable(b), Is.EqualTo(LabCatalog.ScoreTable(a)));
        Assert.That(string.Join('\n', b.Strace), Is.EqualTo(string.Join('\n', a.Strace)));
        Assert.That(a.Strace, Is.Not.Empty);
    }

    private static LabCheck Failed(LabGrade g, string name)
    {
        LabCheck c = g.Checks.Single(c => c.Name == name);
        Assert.That(c.Passed, Is.False, $"{name} should fail:\n{LabCatalog.ScoreTable(g)}");
        return c;
    }

    // ---- Flawed solutions, as students write them.

    private class Correct : DmaMappingSolution
    {
        protected VfioContainerFd? Container { get; set; }
        protected VfioGroupFd? Group { get; set; }
        protected UserBuffer? Buffer { get; set; }

        protected virtual uint Flags => VfioType1Flags.MapRead | VfioType1Flags.MapWrite;

        public override ulong Map(LabEnvironment env)
        {
            Container = new VfioContainerFd(env.Process);
            Group = new VfioGroupFd(env.Process, env.Sim.GroupOf(env.Device!));
            Group.SetContainer(Container);
            Container.SetIommu(VfioExtension.Type1v2);
            Buffer = VfioSim.Allocate(env.Process, Lab02DmaMapping.BufferSize);
            Container.MapDma(Buffer.Address, Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize, Flags);
            return Buffer.Address;
        }

        public override void Unmap(LabEnvironment env) => Container!.UnmapDma(Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize);

        public override void Close(LabEnvironment env)
        {
            Group?.Dispose();
            Container?.Dispose();
            Buffer?.Dispose();
        }
    }

    private sealed class NeverUnmaps : Correct
    {
        public override void Unmap(LabEnvironment env)
        {
        }
    }

    private sealed class UnmapsHalf : Correct
    {
        public override void Unmap(LabEnvironment env) => Container!.UnmapDma(Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize / 2);
    }

    private sealed class UnmapsWrongIova : Correct
    {
        public override void Unmap(LabEnvironment env) => Container!.UnmapDma(0, Lab02DmaMapping.BufferSize);
    }

    private sealed class ReadOnlyMapping : Correct
    {
        protected override uint Flags => VfioType1Flags.MapRead;
    }

    private sealed class LeavesGroupOpen : Correct
    {
        public override void Close(LabEnvironment env)
        {
            Container?.Dispose();
            Buffer?.Dispose();
        }
    }

    private sealed class MapsBeforeSetIommu : Correct
    {
        public override ulong Map(LabEnvironment env)
        {
            Container = new VfioContainerFd(env.Process);
            Group = new VfioGroupFd(env.Process, env.Sim.GroupOf(env.Device!));
            Group.SetContainer(Container);
            Buffer = VfioSim.Allocate(env.Process, Lab02DmaMapping.BufferSize);
            Container.MapDma(Buffer.Address, Lab02DmaMapping.Iova, Lab02DmaMapping.BufferSize);
            Container.SetIommu(VfioExtension.Type1v2);
            return Buffer.Address;
        }
    }
}
