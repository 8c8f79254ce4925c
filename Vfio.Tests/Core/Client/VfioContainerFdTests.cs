// Tests Vfio.Core/Client/VfioContainerFd.cs and VfioException.cs against the fake
// /dev/vfio/vfio (FakeVfio.cs): arguments reach the kernel side as the uapi lays them out,
// and failures carry the errno, the ioctl's name and the kernel's reason.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Core.Client;

public sealed class VfioContainerFdTests
{
    [Test]
    public void ApiVersionAndExtensions_AreAnsweredByTheContainer()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);

        Assert.That(container.GetApiVersion(), Is.EqualTo(VfioExtension.ApiVersion));
        Assert.That(container.CheckExtension(VfioExtension.Type1v2), Is.True);
        Assert.That(container.CheckExtension(VfioExtension.NoIommu), Is.False);
        Assert.That(container.Process, Is.SameAs(vfio.Process));
        Assert.That(vfio.Process.Files.Open.Single(o => o.Fd == container.Fd).File.Path, Is.EqualTo("/dev/vfio/vfio"), "Fd is the process's raw descriptor");
    }

    [Test]
    public void AFailedIoctl_ThrowsWithTheErrno_TheIoctlName_AndTheKernelsReason()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);

        VfioException e = Assert.Throws<VfioException>(() => container.SetIommu(VfioExtension.SpaprTceV2))!;

        Assert.That(e.Errno, Is.EqualTo(Errno.EINVAL));
        Assert.That(e.Ioctl, Is.EqualTo("VFIO_SET_IOMMU"));
        Assert.That(e.Reason, Is.EqualTo("no IOMMU driver supports type 7"));
        Assert.That(e.Message, Is.EqualTo("VFIO_SET_IOMMU: no IOMMU driver supports type 7 — EINVAL"));
        Assert.That(vfio.Container.Iommu, Is.Null);
        container.SetIommu(VfioExtension.Type1v2);
        Assert.That(vfio.Container.Iommu, Is.EqualTo(VfioExtension.Type1v2));
    }

    [Test]
    public void WithoutAKernelReason_TheMessageUsesTheErrnosDescription_AndNoEarlierReasonLeaksIn()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);
        Assert.Throws<VfioException>(() => container.SetIommu(42));

        VfioException e = Assert.Throws<VfioException>(() => container.Ioctl(VfioIoctl.Io(30)))!;

        Assert.That(e.Errno, Is.EqualTo(Errno.ENOTTY));
        Assert.That(e.Reason, Is.Null, "the reason of the previous failure belongs to that call");
        Assert.That(e.Message, Is.EqualTo("ioctl 0x3b82: Inappropriate ioctl for device — ENOTTY"));
    }

    [Test]
    public void AKernelReasonThatAlreadyNamesTheIoctl_IsNotPrefixedTwice()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);
        byte[] tooShort = new byte[VfioIommuType1DmaMap.MinSz];
        BitConverter.TryWriteBytes(tooShort, 8u);

        VfioException e = Assert.Throws<VfioException>(() => container.Ioctl(VfioIoctl.IommuMapDma, tooShort))!;

        Assert.That(e.Message, Is.EqualTo("VFIO_IOMMU_MAP_DMA: argsz 8 is smaller than the minimum 32 — EINVAL"));
    }

    [Test]
    public void MapAndUnmap_PassTheirFields_AndUnmapReturnsTheSizeUnmapped()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);

        container.MapDma(vaddr: 0x7f00_0000_0000, iova: 0x10_0000, size: 0x20_0000);
        container.MapDma(0x7f00_0040_0000, 0x40_0000, 0x1000, VfioType1Flags.MapRead);
        VfioException overlap = Assert.Throws<VfioException>(() => container.MapDma(0x7f00_0100_0000, 0x20_0000, 0x1000))!;

        VfioIommuType1DmaMap first = vfio.Container.Maps[0];
        Assert.That(
            (first.Argsz, first.Flags, first.Vaddr, first.Iova, first.Size),
            Is.EqualTo((32u, VfioType1Flags.MapRead | VfioType1Flags.MapWrite, 0x7f00_0000_0000UL, 0x10_0000UL, 0x20_0000UL)));
        Assert.That(vfio.Container.Maps[1].Flags, Is.EqualTo(VfioType1Flags.MapRead));
        Assert.That(overlap.Errno, Is.EqualTo(Errno.EEXIST));
        Assert.That(overlap.Message, Is.EqualTo("VFIO_IOMMU_MAP_DMA: iova 0x200000 overlaps existing mapping [0x100000, 0x300000) — EEXIST"));
        Assert.That(container.UnmapDma(0, 0x100_0000), Is.EqualTo(0x20_1000UL));
        Assert.That(vfio.Container.Maps, Is.Empty);
    }

    [Test]
    public void GetIommuInfo_GrowsItsBufferOnce_AndParsesTheCapabilities()
    {
        var vfio = new FakeVfio();
        using var container = new VfioContainerFd(vfio.Process);
        container.MapDma(0x7f00_0000_0000, 0, 0x1000);

        VfioIommuInfo info = container.GetIommuInfo();

        Assert.That(vfio.Container.GetInfoCalls, Is.EqualTo(2), "one call to learn the size, one to fetch the chain");
        Assert.That(info.Flags, Is.EqualTo(VfioType1Flags.InfoPgsizes | VfioType1Flags.InfoCaps));
        Assert.That(info.IovaPgsizes, Is.EqualTo(FakeContainer.Pgsizes));
        Assert.That(info.Info.CapOffset, Is.EqualTo(24));
        Assert.That(info.Caps.Select(c => c.Id), Is.EqualTo(new[] { VfioCapId.Type1Migration, VfioCapId.Type1DmaAvail, VfioCapId.Type1IovaRange }));
        Assert.That(info.DmaAvail, Is.EqualTo(65534));
        Assert.That(info.Migration?.PgsizeBitmap, Is.EqualTo(4096));
        Assert.That(info.Migration?.MaxDirtyBitmapSize, Is.EqualTo(256UL << 20));
        Assert.That(info.IovaRanges.Select(r => (r.Start, r.End)), Is.EqualTo(new[] { (0UL, 0xfedf_ffffUL), (0xfef0_0000UL, (1UL << 48) - 1) }));
    }

    [Test]
    public void Dispose_ClosesTheFd_OnlyOnce_AndLaterCallsAreRefused()
    {
        var vfio = new FakeVfio();
        var container = new VfioContainerFd(vfio.Process);
        int fd = container.Fd;
        using var other = new VfioContainerFd(vfio.Process);

        container.Dispose();
        int reused = vfio.Process.Open("/dev/vfio/vfio");
        container.Dispose();

        Assert.That(vfio.Container.Releases, Is.EqualTo(1), "->release ran for the closed file");
        Assert.That(reused, Is.EqualTo(fd), "the number was free again");
        Assert.That(vfio.Process.Files.Open.Any(o => o.Fd == reused), Is.True, "the second Dispose did not close the reused number");
        Assert.Throws<ObjectDisposedException>(() => container.GetApiVersion());
        Assert.That(vfio.Process.Close(reused), Is.Zero);
        Assert.That(vfio.Process.Ioctl(fd, VfioIoctl.GetApiVersion), Is.EqualTo(Errno.EBADF.Negative()));
    }

    [Test]
    public void OpeningAMissingNode_ThrowsWithThePath()
    {
        var m = Machines.Create();
        var p = m.CreateProcess("user");

        VfioException e = Assert.Throws<VfioException>(() => _ = new VfioContainerFd(p))!;

        Assert.That(e.Errno, Is.EqualTo(Errno.ENOENT));
        Assert.That(e.Ioctl, Is.EqualTo("open(/dev/vfio/vfio)"));
        Assert.That(e.Message, Does.EndWith("— ENOENT"));
        Assert.That(p.Files.Open, Is.Empty);
    }
}
