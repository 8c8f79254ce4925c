// Tests the typed client of Vfio.Core/Client against the real vfio core (groups,
// containers, device fds on the default machine): the canonical open sequence, and
// failures carrying the errno, the ioctl's name and the kernel's reason.

using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Tests.Core.Client;

public sealed class VfioClientEndToEndTests
{
    [Test]
    public void TheCanonicalSequence_OpensTheDevice_AndDisposingEverythingLeavesNoReference()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.Edu);
        string baseline = rig.Snapshot(VfioRig.Edu);
        using (var container = new VfioContainerFd(rig.User))
        using (var group = new VfioGroupFd(rig.User, rig.GroupId(VfioRig.Edu)))
        {
            Assert.That(container.GetApiVersion(), Is.EqualTo(VfioExtension.ApiVersion));
            Assert.That(container.CheckExtension(VfioExtension.Type1v2), Is.True);
            Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable));
            group.SetContainer(container);
            container.SetIommu(VfioExtension.Type1v2);
            Assert.That(group.GetStatus(), Is.EqualTo(VfioGroupFlags.Viable | VfioGroupFlags.ContainerSet));
            using VfioDeviceFd device = group.GetDeviceFd(VfioRig.Edu);
            device.Reset();
            Assert.That(rig.Driver.Ops.Opens, Is.EqualTo(1));
        }

        Assert.That(rig.Snapshot(VfioRig.Edu), Is.EqualTo(baseline));
    }

    [Test]
    public void AFailure_ThrowsVfioException_WithTheErrnoTheIoctlAndTheKernelsReason()
    {
        var rig = new VfioRig();
        rig.Bind(VfioRig.PairF0);
        using var container = new VfioContainerFd(rig.User);
        using var group = new VfioGroupFd(rig.User, rig.GroupId(VfioRig.PairF0));
        var ex = Assert.Throws<VfioException>(() => group.SetContainer(container));
        Assert.That(ex!.Errno, Is.EqualTo(Errno.EPERM));
        Assert.That(ex.Ioctl, Is.EqualTo("VFIO_GROUP_SET_CONTAINER"));
        Assert.That(ex.Message, Does.Contain("group 4 is not viable (0000:02:00.1 is bound to igb)").And.EndWith("EPERM"));

        var ex2 = Assert.Throws<VfioException>(() => group.GetDeviceFd(VfioRig.PairF0));
        Assert.That(ex2!.Errno, Is.EqualTo(Errno.EINVAL));
        Assert.That(ex2.Message, Does.Contain("not in a container"));

        var ex3 = Assert.Throws<VfioException>(() => container.SetIommu(7));
        Assert.That(ex3!.Errno, Is.EqualTo(Errno.EINVAL), "no group yet");
    }
}
