// Tests Vfio.Core/VfioContainer.cs (drivers/vfio/container.c): API version, CHECK_EXTENSION
// with and without a backend, SET_IOMMU preconditions and backend search, several groups in
// one container, and closing container, group and device fds in every order. Peer cases
// CG-01/02/10/11/13/14/16, LR-01, LR-02.

using Moq;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Iommu;

namespace Vfio.Tests.Core;

public sealed class ContainerTests
{
    [Test]
    public void CG_01_GetApiVersion_IsZero()
    {
        var rig = new VfioRig();
        int c = rig.OpenContainer();
        Assert.That(rig.User.Ioctl(c, VfioIoctl.GetApiVersion), Is.EqualTo(VfioExtension.ApiVersion));
    }

    [Test]
    public void CG_02_CheckExtension_WithoutABackendSet_PollsEveryRegisteredBackend()
    {
        var rig = new VfioRig();
        int c = rig.OpenContainer();
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.Type1v2), Is.EqualTo(1));
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.Type1), Is.EqualTo(1));
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, 77), Is.Zero, "unknown extensions are 0, never an error");
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.NoIommu), Is.Zero, "noiommu answers 1 only with the module parameter on");
        rig.Vfio.NoIommuMode = true;
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.NoIommu), Is.EqualTo(1));
    }

    [Test]
    public void CheckExtension_WithNoBackendRegistered_IsZero()
    {
        var rig = new VfioRig(backend: false);
        int c = rig.OpenContainer();
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.Type1v2), Is.Zero);
    }

    [Test]
    public void SetIommu_WithoutAGroup_IsEinval()
    {
        var rig = new VfioRig();
        int c = rig.OpenContainer();
        Assert.That(rig.SetIommu(c), Is.EqualTo(Errno.EINVAL.Negative()));
        rig.Backend.Verify(b => b.Open(It.IsAny<ulong>(), out It.Ref<object?>.IsAny), Times.Never());
    }

    [Test]
    public void CG_10_SetIommuOfATypeNoBackendClaims_IsEnodev()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        int c = rig.OpenContainer();
        int g = rig.OpenGroup(VfioRig.Edu);
        Assert.That(rig.SetContainer(g, c), Is.Zero);
        Assert.That(rig.SetIommu(c, 0x1234), Is.EqualTo(Errno.ENODEV.Negative()));
        Assert.That(rig.SetIommu(c), Is.Zero, "still unset after the failure");
    }

    [Test]
    public void CG_11_ASecondSetIommu_IsEinval()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        (int c, _, _) = rig.OpenAll(VfioRig.Edu);
        Assert.That(rig.SetIommu(c, VfioExtension.Type1), Is.EqualTo(Errno.EINVAL.Negative()));
        rig.Backend.Verify(b => b.Open(It.IsAny<ulong>(), out It.Ref<object?>.IsAny), Times.Once());
    }

    [Test]
    public void CG_13_OnceSet_OnlyTheChosenBackendAnswersCheckExtension()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        (int c, _, _) = rig.OpenAll(VfioRig.Edu);
        rig.Backend.Setup(b => b.Ioctl(It.Is<object?>(o => o != null), VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu)).Returns(1);
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.DmaCcIommu), Is.EqualTo(1));
        rig.Vfio.NoIommuMode = true;
        Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.NoIommu), Is.Zero, "the noiommu backend is no longer asked");
    }

    [Test]
    public void SetIommu_WhenTheBackendCannotAttachAGroup_ReleasesItAndReturnsItsError()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        rig.Backend.Setup(b => b.AttachGroup(It.IsAny<object?>(), It.IsAny<IommuGroup>(), VfioGroupType.Iommu)).Returns(Errno.ENOMEM.Negative());
        int c = rig.OpenContainer();
        int g = rig.OpenGroup(VfioRig.Edu);
        Assert.That(rig.SetContainer(g, c), Is.Zero);
        Assert.That(rig.SetIommu(c), Is.EqualTo(Errno.ENOMEM.Negative()));
        rig.Backend.Verify(b => b.Release(It.IsAny<object?>()), Times.Once());
        Assert.That(rig.GetDeviceFd(g, VfioRig.Edu), Is.EqualTo(Errno.EINVAL.Negative()), "no backend: no device fd");
    }

    [Test]
    public void SetContainer_WhenTheLiveBackendCannotAttachTheGroup_ReturnsItsError_AndGivesBackTheDmaOwnership()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        rig.Bind(VfioRig.Nic);
        (int c, _, _) = rig.OpenAll(VfioRig.Edu);
        VfioContainer container = rig.Group(VfioRig.Edu).Container!;
        int containerRefs = container.ReferenceCount;
        rig.Backend.Setup(b => b.AttachGroup(It.IsAny<object?>(), rig.Dev(VfioRig.Nic).IommuGroup!, VfioGroupType.Iommu)).Returns(Errno.ENOSPC.Negative());
        int g2 = rig.OpenGroup(VfioRig.Nic);

        Assert.That(rig.SetContainer(g2, c), Is.EqualTo(Errno.ENOSPC.Negative()));
        Assert.That(rig.Dev(VfioRig.Nic).IommuGroup!.Owner, Is.Null, "the claim was undone");
        Assert.That(container.Groups, Has.Count.EqualTo(1));
        Assert.That(container.ReferenceCount, Is.EqualTo(containerRefs));
        Assert.That(rig.GetStatus(g2, out VfioGroupFlags flags), Is.Zero);
        Assert.That(flags, Is.EqualTo(VfioGroupFlags.Viable));
    }

    [Test]
    public void BackendIoctls_WithoutABackend_AreEinval_AndArePassedThroughOnceSet()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        int c = rig.OpenContainer();
        Assert.That(rig.User.Ioctl(c, VfioIoctl.IommuMapDma, 0), Is.EqualTo(Errno.EINVAL.Negative()));
        int g = rig.OpenGroup(VfioRig.Edu);
        rig.SetContainer(g, c);
        rig.SetIommu(c);
        rig.Backend.Setup(b => b.Ioctl(It.Is<object?>(o => o != null), VfioIoctl.IommuMapDma, 42)).Returns(7);
        Assert.That(rig.User.Ioctl(c, VfioIoctl.IommuMapDma, 42), Is.EqualTo(7));
    }

    [Test]
    public void CG_14_RealAndNoiommuGroups_CannotMix()
    {
        // No IOMMU: one device in a noiommu group, one registered as an emulated-IOMMU device (a real, non-noiommu group).
        var desc = Vfio.Platform.Machine.MachineDescriptionReader.Parse(
            "{\"memory\":{\"ram\":\"1G\"},\"iommu\":null,\"pci\":[{\"slot\":1,\"type\":\"edu\"},{\"slot\":2,\"type\":\"edu\"}]}");
        var rig = new VfioRig(options: new VfioOptions { EnableUnsafeNoiommuMode = true }, backend: false, machine: desc);
        string[] names = [.. rig.Machine.Pci.Devices.OfType<Vfio.Platform.Devices.EduDevice>().Select(d => d.Name)];
        foreach (string name in names)
        {
            rig.Driver.Emulated = name == names[1];
            rig.Bind(name);
        }

        VfioGroup noiommu = rig.Group(names[0]);
        VfioGroup emulated = rig.Group(names[1]);
        Assert.That((noiommu.Type, emulated.Type), Is.EqualTo((VfioGroupType.NoIommu, VfioGroupType.EmulatedIommu)));
        var root = rig.Sim.Spawn("root");
        int c = root.Open("/dev/vfio/vfio");
        int g1 = root.Open(noiommu.DevPath);
        int g2 = root.Open(emulated.DevPath);
        int cfd = c;
        Span<byte> arg = System.Runtime.InteropServices.MemoryMarshal.AsBytes(new Span<int>(ref cfd));
        Assert.That(root.Ioctl(g1, VfioIoctl.GroupSetContainer, arg), Is.Zero);
        Assert.That(root.Ioctl(g2, VfioIoctl.GroupSetContainer, arg), Is.EqualTo(Errno.EPERM.Negative()));
        Assert.That(ErrorReason.Current, Does.Contain("cannot mix"));
        Assert.That(noiommu.Container!.Groups, Has.Count.EqualTo(1));
    }

    [Test]
    public void CG_16_TwoGroupsInOneContainer_ShareTheBackend_AndReferencesReturnToBaseline()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        rig.Bind(VfioRig.Nic);
        int c = rig.OpenContainer();
        int g1 = rig.OpenGroup(VfioRig.Edu);
        int g2 = rig.OpenGroup(VfioRig.Nic);
        Assert.That(rig.SetContainer(g1, c), Is.Zero);
        Assert.That(rig.SetContainer(g2, c), Is.Zero);
        Assert.That(rig.SetIommu(c), Is.Zero);
        rig.Backend.Verify(b => b.AttachGroup(It.IsAny<object?>(), It.IsAny<IommuGroup>(), VfioGroupType.Iommu), Times.Exactly(2));
        VfioContainer container = rig.Group(VfioRig.Edu).Container!;
        Assert.That(container.Groups, Has.Count.EqualTo(2));
        Assert.That(container.ReferenceCount, Is.EqualTo(3), "the fd and two groups");

        long d = rig.GetDeviceFd(g2, VfioRig.Nic);
        Assert.That(d, Is.GreaterThanOrEqualTo(0));

        // A third group attached after SET_IOMMU is attached to the backend at once.
        rig.Bind(VfioRig.PairF0);
        rig.Machine.Sysfs.Write("/sys/bus/pci/drivers/igb/unbind", VfioRig.PairF1);
        int g3 = rig.OpenGroup(VfioRig.PairF0);
        Assert.That(rig.SetContainer(g3, c), Is.Zero);
        rig.Backend.Verify(b => b.AttachGroup(It.IsAny<object?>(), It.IsAny<IommuGroup>(), VfioGroupType.Iommu), Times.Exactly(3));

        rig.User.Close((int)d);
        rig.User.Close(g1);
        rig.User.Close(g2);
        rig.User.Close(g3);
        rig.Backend.Verify(b => b.Release(It.IsAny<object?>()), Times.Once(), "the last group out releases the backend");
        Assert.That(container.ReferenceCount, Is.EqualTo(1), "only the fd is left");
        rig.User.Close(c);
        Assert.That(container.ReferenceCount, Is.Zero);
    }

    [Test]
    public void LR_01_ADeviceFd_KeepsWorkingAfterTheContainerAndGroupFdsClose()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
        rig.User.Close(c);
        rig.User.Close(g);
        Assert.That(rig.User.Ioctl(d, VfioIoctl.DeviceReset), Is.Zero);
        Assert.That(rig.OpenGroup(VfioRig.Edu), Is.EqualTo(Errno.EBUSY.Negative()), "the device fd holds the group file");
        rig.Backend.Verify(b => b.Release(It.IsAny<object?>()), Times.Never());
        rig.User.Close(d);
        rig.Backend.Verify(b => b.Release(It.IsAny<object?>()), Times.Once());
        Assert.That(rig.OpenGroup(VfioRig.Edu), Is.GreaterThanOrEqualTo(0));
    }

    private static readonly int[][] s_orders =
    [
        [0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0],
    ];

    [Test]
    public void LR_02_ClosingContainerGroupAndDevice_InAnyOrder_LeavesNoReference([Range(0, 5)] int order)
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        string baseline = rig.Snapshot(VfioRig.Edu);
        (int c, int g, int d) = rig.OpenAll(VfioRig.Edu);
        VfioContainer container = rig.Group(VfioRig.Edu).Container!;
        int[] fds = [c, g, d];
        foreach (int i in s_orders[order])
        {
            Assert.That(rig.User.Close(fds[i]), Is.Zero);
        }

        Assert.That(rig.Snapshot(VfioRig.Edu), Is.EqualTo(baseline));
        Assert.That(container.ReferenceCount, Is.Zero);
        Assert.That(rig.Driver.Ops.Closes, Is.EqualTo(1));
        rig.Backend.Verify(b => b.Release(It.IsAny<object?>()), Times.Once());
        Assert.That(rig.OpenGroup(VfioRig.Edu), Is.GreaterThanOrEqualTo(0), "the group is openable again");
        Assert.That(rig.Unbind(VfioRig.Edu), Is.EqualTo("vfio-test"), "and unbinds without waiting");
    }
}
