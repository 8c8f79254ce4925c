// Tests Vfio.Sim/Labs/Lab07KvmExternalUser.cs: the reference solution (and its public-API
// copy in examples/LabCourse) gets full marks on both kernels; realistic mistakes fail the
// check they should, with a message that names what the kernel did; grading is deterministic.

using System.Runtime.InteropServices;
using LabCourse;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace Vfio.Tests.Labs;

public sealed class Lab07KvmExternalUserTests
{
    private static readonly Lab07KvmExternalUser s_lab = new();

    public enum Flaw
    {
        None,
        AddsTheContainerFd,
        AddsBeforeSetIommu,
        UnsetsBeforeDel,
        LeaksTheKvmVfioFd,
    }

    private static LabCheck Check(LabGrade g, string name) => g.Checks.Single(c => c.Name == name);

    [Test]
    public void TheReferenceSolution_GetsFullMarksOnBothKernels()
    {
        LabGrade g = s_lab.Grade(s_lab.CreateReferenceSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
        Assert.That(g.MaxScore, Is.EqualTo(10));
        Assert.That(g.Checks.Select(c => c.Name), Has.Some.StartsWith("linux-6.12").And.Some.StartsWith("v5.18 API"));
    }

    [Test]
    public void TheExampleSolution_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(new Lab07KvmExternalUserSolution());
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void TheTestsOwnCorrectVariant_GetsFullMarks()
    {
        LabGrade g = s_lab.Grade(new Variant(Flaw.None));
        Assert.That(g.Passed, Is.True, g.ToString());
    }

    [Test]
    public void AddingTheContainerFdInsteadOfTheGroupFd_IsEinval_AndTheMessageSaysKvmTakesAGroup()
    {
        LabGrade g = s_lab.Grade(new Variant(Flaw.AddsTheContainerFd));
        LabCheck holds = Check(g, "linux-6.12: KVM holds the group");
        Assert.That(holds.Passed, Is.False);
        Assert.That(holds.Message, Does.Contain("EINVAL").And.Contain("never the container").And.Contain("/dev/vfio/vfio"));
        Assert.That(g.Strace.Any(r => r.Request == "KVM_SET_DEVICE_ATTR" && r.Error == Vfio.Kernel.Errno.EINVAL), Is.True);
    }

    [Test]
    public void AddingTheGroupBeforeSetIommu_WorksToday_ButIsEinvalOnTheCheckedApi()
    {
        LabGrade g = s_lab.Grade(new Variant(Flaw.AddsBeforeSetIommu));
        Assert.That(Check(g, "linux-6.12: KVM holds the group").Passed, Is.True);
        LabCheck old = Check(g, "v5.18 API: KVM holds the group");
        Assert.That(old.Passed, Is.False);
        Assert.That(old.Message, Does.Contain("EINVAL").And.Contain("VFIO_SET_IOMMU before KVM_DEV_VFIO_FILE_ADD").And.Contain("seed 004"));
    }

    [Test]
    public void UnsettingTheContainerBeforeDeletingTheGroupFromKvm_IsEbusyOnTheCheckedApi_AndTheMessageTellsSeed004()
    {
        LabGrade g = s_lab.Grade(new Variant(Flaw.UnsetsBeforeDel));
        Assert.That(Check(g, "linux-6.12: the teardown was clean").Passed, Is.True, g.ToString());
        LabCheck old = Check(g, "v5.18 API: the teardown was clean");
        Assert.That(old.Passed, Is.False);
        Assert.That(old.Message, Does.Contain("VFIO_GROUP_UNSET_CONTAINER").And.Contain("EBUSY").And.Contain("seed 004").And.Contain("KVM_DEV_VFIO_FILE_DEL"));
    }

    [Test]
    public void ClosingTheVmButNotTheKvmVfioDevice_LeavesTheGroupHeldByKvm_AndTheMessageSaysSo()
    {
        LabGrade g = s_lab.Grade(new Variant(Flaw.LeaksTheKvmVfioFd));
        LabCheck released = Check(g, "linux-6.12: KVM let go of the group");
        Assert.That(released.Passed, Is.False);
        Assert.That(released.Message, Does.Contain("KVM still holds /dev/vfio/").And.Contain("KVM_DEV_VFIO_FILE_DEL").And.Contain("EBUSY"));
        Assert.That(Check(g, "v5.18 API: KVM let go of the group").Passed, Is.False);
    }

    [Test]
    public void GradingTwice_GivesTheSameGradeAndTheSameStrace()
    {
        LabGrade a = s_lab.Grade(new Lab07KvmExternalUserSolution()), b = s_lab.Grade(new Lab07KvmExternalUserSolution());
        Assert.That(b.Checks, Is.EqualTo(a.Checks));
        Assert.That(string.Join("\n", b.Strace), Is.EqualTo(string.Join("\n", a.Strace)));
        Assert.That(a.Strace.Count(r => r.Request == "KVM_SET_DEVICE_ATTR"), Is.EqualTo(4));
    }

    // A solution that ignores the results of its KVM calls (as a first attempt does), with one flaw.
    private sealed class Variant(Flaw flaw) : KvmExternalUserSolution
    {
        private VfioContainerFd? _container;
        private VfioGroupFd? _group;
        private VfioDeviceFd? _device;
        private UserBuffer? _arg;
        private int _vm = -1, _kvmVfio = -1;

        public override void Attach(LabEnvironment env)
        {
            SimProcess p = env.Process;
            _container = new VfioContainerFd(p);
            _group = new VfioGroupFd(p, env.Sim.GroupOf(env.Device!));
            if (flaw != Flaw.AddsBeforeSetIommu)
            {
                SetUpContainer();
            }

            int kvm = p.Open("/dev/kvm");
            _vm = (int)p.Ioctl(kvm, KvmIoctl.CreateVm);
            p.Close(kvm);
            var cd = new KvmCreateDevice { Type = (uint)KvmDeviceType.Vfio };
            p.Ioctl(_vm, KvmIoctl.CreateDevice, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cd, 1)));
            _kvmVfio = (int)cd.Fd;
            _arg = VfioSim.Allocate(p, 4096);
            _arg.Write(0, BitConverter.GetBytes(flaw == Flaw.AddsTheContainerFd ? _container.Fd : _group.Fd));
            SetAttr(p, KvmDevVfio.FileAdd);
            if (flaw == Flaw.AddsBeforeSetIommu)
            {
                SetUpContainer();
            }

            _device = _group.GetDeviceFd(env.Device!);
        }

        public override void Detach(LabEnvironment env)
        {
            SimProcess p = env.Process;
            _device!.Dispose();
            if (flaw == Flaw.UnsetsBeforeDel)
            {
                _group!.UnsetContainer();
            }

            if (flaw != Flaw.LeaksTheKvmVfioFd)
            {
                SetAttr(p, KvmDevVfio.FileDel);
                p.Close(_kvmVfio);
            }

            p.Close(_vm);
            if (flaw != Flaw.UnsetsBeforeDel)
            {
                _group!.UnsetContainer();
            }

            _group!.Dispose();
            _container!.Dispose();
            _arg!.Dispose();
        }

        private void SetUpContainer()
        {
            _group!.SetContainer(_container!);
            _container!.SetIommu(VfioExtension.Type1v2);
        }

        private long SetAttr(SimProcess p, ulong attr)
        {
            var a = new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = attr, Addr = _arg!.Address };
            return p.Ioctl(_kvmVfio, KvmIoctl.SetDeviceAttr, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref a, 1)));
        }
    }
}
