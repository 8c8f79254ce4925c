// Tests Vfio.Core/Client/VfioContainerFd.cs and VfioException.cs against the real vfio core
// and type1 on the host (ClientSim.cs): arguments reach the kernel as the uapi lays them
// out, and failures carry the errno, the ioctl's name and the kernel's reason.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Core.Client;

public sealed class VfioContainerFdTests
{
    [Test]
    public void ApiVersionAndExtensions_AreAnsweredByTheContainer()
    {
        var vfio = new ClientSim();
        using var container = new VfioContainerFd(vfio.Process);

        Assert.That(container.GetApiVersion(), Is.EqualTo(VfioExtension.ApiVersion));
        Assert.That(container.CheckExtension(VfioExtension.Type1v2), Is.True);
        Assert.That(container.CheckExtension(VfioExtension.NoIommu), Is.False, "noiommu mode is off");
        Assert.That(container.Process, Is.SameAs(vfio.Process));
        Assert.That(vfio.Process.Files.Open.Single(o => o.Fd == container.Fd).File.Path, Is.EqualTo("/dev/vfio/vfio"), "Fd is the process's raw descriptor");
    }

    [Test]
    public void AFailedIoctl_ThrowsWithTheErrno_TheIoctlName_AndTheKernelsReason()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup(iommu: false);
        using (group)
        using (container)
        {
            // vfio_ioctl_set_iommu(): no registered backend takes type 7, so -ENODEV.
            VfioException e = Assert.Throws<VfioException>(() => container.SetIommu(VfioExtension.SpaprTceV2))!;

            Assert.That(e.Errno, Is.EqualTo(Errno.ENODEV));
            Assert.That(e.Ioctl, Is.EqualTo("VFIO_SET_IOMMU"));
            Assert.That(e.Reason, Is.EqualTo("VFIO_SET_IOMMU: no IOMMU driver supports type 7"));
            Assert.That(e.Message, Is.EqualTo("VFIO_SET_IOMMU: no IOMMU driver supports type 7 — ENODEV"));
            Assert.That(vfio.KernelContainer(container).HasIommuDriver, Is.False);
            container.SetIommu(VfioExtension.Type1v2);
            Assert.That(vfio.KernelContainer(container).IommuDriver, Is.SameAs(vfio.Sim.Type1));
        }
    }

    [Test]
    public void WithoutAKernelReason_TheMessageUsesTheErrnosDescription_AndNoEarlierReasonLeaksIn()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup(iommu: false);
        using (group)
        using (container)
        {
            Assert.Throws<VfioException>(() => container.SetIommu(42));
            container.SetIommu(VfioExtension.Type1v2);

            // type1 answers a command it does not know with a bare -ENOTTY.
            VfioException e = Assert.Throws<VfioException>(() => container.Ioctl(VfioIoctl.Io(30)))!;

            Assert.That(e.Errno, Is.EqualTo(Errno.ENOTTY));
            Assert.That(e.Reason, Is.Null, "the reason of the previous failure belongs to that call");
            Assert.That(e.Message, Is.EqualTo("ioctl 0x3b82: Inappropriate ioctl for device — ENOTTY"));
        }
    }

    [Test]
    public void AKernelReasonThatAlreadyNamesTheIoctl_IsNotPrefixedTwice()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup();
        using (group)
        using (container)
        {
            byte[] tooShort = new byte[VfioIommuType1DmaMap.MinSz];
            BitConverter.TryWriteBytes(tooShort, 8u);

            VfioException e = Assert.Throws<VfioException>(() => container.Ioctl(VfioIoctl.IommuMapDma, tooShort))!;

            Assert.That(e.Message, Is.EqualTo("VFIO_IOMMU_MAP_DMA: argsz 8 is smaller than the minimum 32 — EINVAL"));
        }
    }

    [Test]
    public void MapAndUnmap_PassTheirFields_AndUnmapReturnsTheSizeUnmapped()
    {
        var vfio = new ClientSim();
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup();
        using (group)
        using (container)
        {
            using UserBuffer big = VfioSim.Allocate(vfio.Process, 0x20_0000);
            using UserBuffer small = VfioSim.Allocate(vfio.Process, 0x1000);

            container.MapDma(vaddr: big.Address, iova: 0x10_0000, size: 0x20_0000);
            container.MapDma(small.Address, 0x40_0000, 0x1000, VfioType1Flags.MapRead);
            VfioException overlap = Assert.Throws<VfioException>(() => container.MapDma(small.Address, 0x20_0000, 0x1000))!;

            // type1 refuses an argsz below 32, so the mappings also show the struct's size got through.
            VfioIommu type1 = vfio.Type1Of(container);
            Assert.That(type1.Mappings, Has.Count.EqualTo(2));
            VfioDmaInfo first = type1.Mappings[0];
            Assert.That(
                (first.Prot, first.Vaddr, first.Iova, first.Size),
                Is.EqualTo((IommuProt.Read | IommuProt.Write, big.Address, 0x10_0000UL, 0x20_0000UL)));
            Assert.That(type1.Mappings[1].Prot, Is.EqualTo(IommuProt.Read));
            Assert.That(overlap.Errno, Is.EqualTo(Errno.EEXIST));
            Assert.That(overlap.Message, Is.EqualTo("VFIO_IOMMU_MAP_DMA: iova 0x200000 +0x1000 overlaps existing mapping [0x100000, 0x300000) — EEXIST"));
            Assert.That(container.UnmapDma(0, 0x100_0000), Is.EqualTo(0x20_1000UL));
            Assert.That(type1.Mappings, Is.Empty);
        }
    }

    [Test]
    public void GetIommuInfo_GrowsItsBufferOnce_AndParsesTheCapabilities()
    {
        var vfio = new ClientSim();
        var counted = new CountingIommuDriver(vfio.Sim.Type1!);
        Assert.That(vfio.Sim.Vfio.RegisterIommuDriver(counted), Is.Zero);
        (VfioContainerFd container, VfioGroupFd group) = vfio.OpenContainerWithGroup();
        using (group)
        using (container)
        {
            using UserBuffer page = VfioSim.Allocate(vfio.Process, 0x1000);
            container.MapDma(page.Address, 0, 0x1000);

            VfioIommuInfo info = container.GetIommuInfo();

            VfioIommu type1 = vfio.Type1Of(container);
            Assert.That(vfio.KernelContainer(container).IommuDriver, Is.SameAs(counted));
            Assert.That(counted.Calls(VfioIoctl.IommuGetInfo), Is.EqualTo(2), "one call to learn the size, one to fetch the chain");
            Assert.That(info.Flags, Is.EqualTo(VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps));
            Assert.That(info.IovaPgsizes, Is.EqualTo(type1.PgsizeBitmap));
            Assert.That(info.Info.CapOffset, Is.EqualTo(24));
            Assert.That(info.Caps.Select(c => c.Id), Is.EqualTo(new[] { VfioCapId.Type1Migration, VfioCapId.Type1DmaAvail, VfioCapId.Type1IovaRange }));
            Assert.That(info.DmaAvail, Is.EqualTo(VfioIommuType1.DefaultDmaEntryLimit - 1));
            Assert.That(info.Migration?.PgsizeBitmap, Is.EqualTo(4096));
            Assert.That(info.Migration?.MaxDirtyBitmapSize, Is.EqualTo(256UL << 20));
            Assert.That(info.IovaRanges.Select(r => (r.Start, r.End)), Is.EqualTo(type1.IovaList.Select(r => (r.Start, r.End))));
            Assert.That(info.IovaRanges[0].Start, Is.Zero);
            Assert.That(info.IovaRanges[0].End, Is.EqualTo(0xfedf_ffffUL), "the MSI window cuts the first range");
        }
    }

    [Test]
    public void Dispose_ClosesTheFd_OnlyOnce_AndLaterCallsAreRefused()
    {
        var vfio = new ClientSim();
        var container = new VfioContainerFd(vfio.Process);
        int fd = container.Fd;
        Vfio.Core.VfioContainer kernelContainer = vfio.KernelContainer(container);
        using var other = new VfioContainerFd(vfio.Process);

        container.Dispose();
        int reused = vfio.Process.Open("/dev/vfio/vfio");
        container.Dispose();

        Assert.That(kernelContainer.ReferenceCount, Is.Zero, "->release ran for the closed file and freed its container");
        Assert.That(vfio.KernelContainer(other).ReferenceCount, Is.EqualTo(1), "the other container is untouched");
        Assert.That(reused, Is.EqualTo(fd), "the number was free again");
        Assert.That(vfio.Process.Files.Open.Any(o => o.Fd == reused), Is.True, "the second Dispose did not close the reused number");
        Assert.Throws<ObjectDisposedException>(() => container.GetApiVersion());
        Assert.That(vfio.Process.Close(reused), Is.Zero);
        Assert.That(vfio.Process.Ioctl(fd, VfioIoctl.GetApiVersion), Is.EqualTo(Errno.EBADF.Negative()));
    }

    [Test]
    public void OpeningAMissingNode_ThrowsWithThePath()
    {
        // A host without vfio: no /dev/vfio/vfio.
        VfioSim sim = VfioSim.CreateBuilder().UseScheduler(SchedulerMode.Real).Build();
        SimProcess p = sim.Spawn("user");

        VfioException e = Assert.Throws<VfioException>(() => _ = new VfioContainerFd(p))!;

        Assert.That(e.Errno, Is.EqualTo(Errno.ENOENT));
        Assert.That(e.Ioctl, Is.EqualTo("open(/dev/vfio/vfio)"));
        Assert.That(e.Message, Does.EndWith("— ENOENT"));
        Assert.That(p.Files.Open, Is.Empty);
    }
}
