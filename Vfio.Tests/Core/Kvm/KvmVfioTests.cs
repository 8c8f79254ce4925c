// Tests Vfio.Core/Kvm (virt/kvm/kvm_main.c and virt/kvm/vfio.c, v6.12) through a
// process's syscalls: /dev/kvm and the VM fd, the one kvm-vfio device per VM, FILE_ADD /
// FILE_DEL with every errno leaving the state as it was, the file reference KVM holds, the
// VM reference a device takes at first open, and the ≤v5.18 external-user variants.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Kvm;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using KvmModule = Vfio.Core.Kvm.Kvm;

namespace Vfio.Tests.Core.Kvm;

[TestFixture]
public sealed class KvmVfioTests
{
    private static void Run(Action<KvmRig> body, VfioExternalUsers users = VfioExternalUsers.FileApi)
    {
        var r = new KvmRig(users: users);
        r.Vfio.Run(() => body(r));
    }

    private static Errno Err(long ret) => ret < 0 ? (Errno)(-ret) : 0;

    /// <summary>Everything a rejected ADD/DEL must leave alone.</summary>
    private static (int Refs, IVfioKvm? GroupKvm, IVfioKvm? DeviceKvm, int Users, int Files, int Assigned, int Noncoherent, int ContainerUsers) State(KvmRig r, int groupFd, int vmFd, int devFd)
    {
        KvmVm vm = r.Vm(vmFd);
        return (r.FileRefs(groupFd), r.Group.Kvm, r.Device.Kvm, vm.UsersCount, r.Private<KvmVfio>(devFd).FileCount, vm.AssignedDeviceCount, vm.NoncoherentDmaCount, r.Group.ContainerUsersSnapshot);
    }

    [Test]
    public void DevKvm_AnswersTheApiVersion_AndCreatesAVmFd()
    {
        Run(r =>
        {
            int kvm = r.P.Open("/dev/kvm");
            Assert.That(r.P.Ioctl(kvm, KvmIoctl.GetApiVersion), Is.EqualTo(12));
            Assert.That(Err(r.P.Ioctl(kvm, KvmIoctl.GetApiVersion, 1)), Is.EqualTo(Errno.EINVAL));
            Assert.That(r.P.Ioctl(kvm, KvmIoctl.CheckExtension, KvmIoctl.CapDeviceCtrl), Is.EqualTo(1));
            Assert.That(Err(r.P.Ioctl(kvm, KvmIoctl.CreateVm, 7)), Is.EqualTo(Errno.EINVAL), "only the default machine type");
            Assert.That(Err(r.P.Ioctl(kvm, 0xAE99)), Is.EqualTo(Errno.EINVAL), "unknown system ioctl");

            int vm = (int)r.P.Ioctl(kvm, KvmIoctl.CreateVm);
            Assert.That(vm, Is.GreaterThanOrEqualTo(0));
            Assert.That(r.PathOf(vm), Is.EqualTo("anon_inode:kvm-vm"));
            Assert.That(r.Vm(vm).UsersCount, Is.EqualTo(1));
            Assert.That(r.Kvm.Vms, Has.Count.EqualTo(1));
            Assert.That(Err(r.P.Ioctl(vm, 0xAE99)), Is.EqualTo(Errno.ENOTTY), "unknown VM ioctl");

            KvmVm v = r.Vm(vm);
            Assert.That(r.P.Close(vm), Is.Zero);
            Assert.That(v.IsDestroyed, Is.True);
            Assert.That(r.P.Close(kvm), Is.Zero);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void FailedAllocations_AreEnomem_AndChangeNothing()
    {
        Run(r =>
        {
            FaultInjector faults = r.Vfio.Kernel.Faults;
            int kvm = r.P.Open("/dev/kvm");
            int free = r.P.Dup(kvm);
            Assert.That(r.P.Close(free), Is.Zero);

            // kvm_create_vm() allocates the VM before kvm_arch_init_vm() checks the type.
            faults.FailNth(1, KvmModule.VmAllocFaultSite);
            Assert.That(Err(r.P.Ioctl(kvm, KvmIoctl.CreateVm, 7)), Is.EqualTo(Errno.ENOMEM), "ENOMEM before the type's EINVAL");
            faults.FailNth(1, KvmModule.VmAllocFaultSite);
            Assert.That(Err(r.P.Ioctl(kvm, KvmIoctl.CreateVm)), Is.EqualTo(Errno.ENOMEM));
            faults.Disarm();
            Assert.That(r.Kvm.Vms, Is.Empty);
            int dup = r.P.Dup(kvm);
            Assert.That(dup, Is.EqualTo(free), "the reserved fd went back");
            r.Close(dup, kvm);

            (int g, _, int vm, int dev, KvmVm v) = r.SetUp();
            faults.FailNth(1, KvmVm.DeviceAllocFaultSite);
            Assert.That(Err(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, 0, out _)), Is.EqualTo(Errno.ENOMEM), "the allocation comes before the one-per-VM check");
            Assert.That(v.UsersCount, Is.EqualTo(2));

            faults.FailNth(1, KvmVfio.FileAllocFaultSite);
            Assert.That(Err(r.Add(dev, g)), Is.EqualTo(Errno.ENOMEM));
            faults.Disarm();
            Assert.That(r.FileRefs(g), Is.EqualTo(1), "no file reference kept");
            Assert.That(r.Group.Kvm, Is.Null);
            Assert.That(r.Private<KvmVfio>(dev).FileCount, Is.Zero);
            Assert.That((v.AssignedDeviceCount, v.NoncoherentDmaCount, v.UsersCount), Is.EqualTo((0, 0, 2)));
            Assert.That(r.Add(dev, g), Is.Zero, "the same file can be added once memory is back");

            r.Close(dev, vm, g);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void CreateDevice_MakesOneKvmVfioDevicePerVm_AndHonoursTheTestFlag()
    {
        Run(r =>
        {
            int vm = r.CreateVm();
            KvmVm v = r.Vm(vm);
            Assert.That(Err(r.CreateDevice(vm, (uint)KvmDeviceType.ArmVgicV3, 0, out _)), Is.EqualTo(Errno.ENODEV));
            Assert.That(Err(r.CreateDevice(vm, 100, 0, out _)), Is.EqualTo(Errno.ENODEV));
            Assert.That(Err(r.CreateDevice(vm, (uint)KvmDeviceType.Xics, KvmIoctl.CreateDeviceTest, out _)), Is.EqualTo(Errno.ENODEV));
            Assert.That(Err(r.P.Ioctl(vm, KvmIoctl.CreateDevice, 0x10UL)), Is.EqualTo(Errno.EFAULT));

            Assert.That(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, KvmIoctl.CreateDeviceTest, out KvmCreateDevice test), Is.Zero);
            Assert.That(test.Fd, Is.EqualTo(0xdead), "a test creation writes no fd");
            Assert.That(v.UsersCount, Is.EqualTo(1), "and makes no device");

            Assert.That(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, 0, out KvmCreateDevice cd), Is.Zero);
            int dev = (int)cd.Fd;
            Assert.That(r.PathOf(dev), Is.EqualTo("anon_inode:kvm-vfio"));
            Assert.That(v.UsersCount, Is.EqualTo(2), "the device fd holds the VM");

            Assert.That(Err(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, 0, out _)), Is.EqualTo(Errno.EBUSY));
            Assert.That(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, KvmIoctl.CreateDeviceTest, out _), Is.Zero, "the test flag does not look at existing devices");
            Assert.That(v.UsersCount, Is.EqualTo(2));

            // The device's own ioctls.
            Assert.That(Err(r.Attr(dev, KvmIoctl.GetDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileAdd, 0)), Is.EqualTo(Errno.EPERM), "kvm-vfio has no get_attr");
            Assert.That(r.Attr(dev, KvmIoctl.HasDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileAdd, 0), Is.Zero);
            Assert.That(r.Attr(dev, KvmIoctl.HasDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileDel, 0), Is.Zero);
            Assert.That(Err(r.Attr(dev, KvmIoctl.HasDeviceAttr, KvmDevVfio.File, KvmDevVfio.GroupSetSpaprTce, 0)), Is.EqualTo(Errno.ENXIO));
            Assert.That(Err(r.Attr(dev, KvmIoctl.HasDeviceAttr, 2, KvmDevVfio.FileAdd, 0)), Is.EqualTo(Errno.ENXIO));
            Assert.That(Err(r.P.Ioctl(dev, KvmIoctl.SetDeviceAttr, 0x10UL)), Is.EqualTo(Errno.EFAULT));
            Assert.That(Err(r.P.Ioctl(dev, 0xAE99)), Is.EqualTo(Errno.ENOTTY));

            // Closing the device releases it at once: a new one can be made.
            Assert.That(r.P.Close(dev), Is.Zero);
            Assert.That(v.UsersCount, Is.EqualTo(1));
            int dev2 = r.CreateVfioDevice(vm);
            Assert.That(r.P.Close(dev2), Is.Zero);
            Assert.That(r.P.Close(vm), Is.Zero);
            Assert.That(v.IsDestroyed, Is.True);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void CreateDevice_WithoutAFreeFd_IsEmfile_AndUnwindsTheDevice()
    {
        Run(r =>
        {
            int vm = r.CreateVm();
            KvmVm v = r.Vm(vm);
            List<int> filler = [];
            for (int fd = r.P.Dup(vm); fd >= 0; fd = r.P.Dup(vm))
            {
                filler.Add(fd);
            }

            Assert.That(Err(r.CreateDevice(vm, (uint)KvmDeviceType.Vfio, 0, out _)), Is.EqualTo(Errno.EMFILE));
            Assert.That(v.UsersCount, Is.EqualTo(1), "the fd's VM reference went back");
            r.Close([.. filler]);

            // The device left the VM's list: a new one is not EBUSY.
            int dev = r.CreateVfioDevice(vm);
            Assert.That(v.UsersCount, Is.EqualTo(2));
            r.Close(dev, vm);
            Assert.That(v.IsDestroyed, Is.True);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void VmAndDeviceIoctls_FromAnotherProcess_AreEio()
    {
        Run(r =>
        {
            int vm = r.CreateVm();
            int dev = r.CreateVfioDevice(vm);
            var other = r.Vfio.Machine.CreateProcess("other", Vfio.Platform.Proc.Credentials.Root);
            int ovm = r.P.SendFd(vm, other);
            int odev = r.P.SendFd(dev, other);
            Assert.That(Err(other.Ioctl(ovm, KvmIoctl.CheckExtension, KvmIoctl.CapDeviceCtrl)), Is.EqualTo(Errno.EIO));
            Assert.That(Err(other.Ioctl(odev, KvmIoctl.SetDeviceAttr, 0x10UL)), Is.EqualTo(Errno.EIO));
            Assert.That(other.Close(ovm), Is.Zero);
            Assert.That(other.Close(odev), Is.Zero);
            r.Close(dev, vm);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void FileAdd_TakesTheGroupFile_AndFileDel_GivesItBack()
    {
        Run(r =>
        {
            (int g, _, int vm, int dev, KvmVm v) = r.SetUp();
            var kv = r.Private<KvmVfio>(dev);
            Assert.That(r.FileRefs(g), Is.EqualTo(1));

            Assert.That(r.Add(dev, g), Is.Zero);
            Assert.That(r.FileRefs(g), Is.EqualTo(2), "KVM holds the group file");
            Assert.That(r.Group.Kvm, Is.SameAs(v), "vfio_file_set_kvm");
            Assert.That(kv.FileCount, Is.EqualTo(1));
            Assert.That(v.AssignedDeviceCount, Is.EqualTo(1));
            SimFile gf = r.P.Files.Get(g)!;
            Assert.That(v.NoncoherentDmaCount, Is.EqualTo(VfioFile.EnforcedCoherent(gf) ? 0 : 1));
            gf.Put();
            Assert.That(v.UsersCount, Is.EqualTo(2), "association alone takes no VM reference");

            Assert.That(r.Del(dev, g), Is.Zero);
            Assert.That(r.FileRefs(g), Is.EqualTo(1));
            Assert.That(r.Group.Kvm, Is.Null);
            Assert.That(kv.FileCount, Is.Zero);
            Assert.That((v.AssignedDeviceCount, v.NoncoherentDmaCount), Is.EqualTo((0, 0)));

            // The same file can come back after a DEL.
            Assert.That(r.Add(dev, g), Is.Zero);
            Assert.That(r.Del(dev, g), Is.Zero);

            r.Close(dev, vm, g);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void EveryRejectedAddOrDel_ReturnsItsErrno_AndChangesNothing()
    {
        Run(r =>
        {
            (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true, add: true);
            int device = r.GetDeviceFd(g);
            Assert.That(device, Is.GreaterThanOrEqualTo(0));
            Assert.That(r.Device.Kvm, Is.SameAs(v), "the open device holds the VM");
            int efd = r.P.Eventfd(0);
            int kvmFd = r.P.Open("/dev/kvm");
            var before = State(r, g, vm, dev);

            void Rejected(string what, long ret, Errno expected)
            {
                Assert.That(Err(ret), Is.EqualTo(expected), what);
                Assert.That(State(r, g, vm, dev), Is.EqualTo(before), $"{what} changed the state");
            }

            Rejected("ADD with a bad pointer", r.Attr(dev, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileAdd, g, addr: 0x10), Errno.EFAULT);
            Rejected("DEL with a bad pointer", r.Attr(dev, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, KvmDevVfio.FileDel, g, addr: 0x10), Errno.EFAULT);
            Rejected("ADD of a closed fd", r.Add(dev, 999), Errno.EBADF);
            Rejected("ADD of a negative fd", r.Add(dev, -1), Errno.EBADF);
            Rejected("DEL of a closed fd", r.Del(dev, 999), Errno.EBADF);
            Rejected("ADD of an eventfd", r.Add(dev, efd), Errno.EINVAL);
            Rejected("ADD of /dev/kvm", r.Add(dev, kvmFd), Errno.EINVAL);
            Rejected("ADD of the container", r.Add(dev, container), Errno.EINVAL);
            Rejected("ADD of the group twice", r.Add(dev, g), Errno.EEXIST);
            Rejected("DEL of a file never added", r.Del(dev, efd), Errno.ENOENT);
            Rejected("SET_SPAPR_TCE", r.Attr(dev, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, KvmDevVfio.GroupSetSpaprTce, g), Errno.ENXIO);
            Rejected("an unknown attribute", r.Attr(dev, KvmIoctl.SetDeviceAttr, KvmDevVfio.File, 9, g), Errno.ENXIO);
            Rejected("an unknown group", r.Attr(dev, KvmIoctl.SetDeviceAttr, 7, KvmDevVfio.FileAdd, g), Errno.ENXIO);

            // A dup of the group fd is the same file: still EEXIST.
            int dup = r.P.Dup(g);
            Assert.That(Err(r.Add(dev, dup)), Is.EqualTo(Errno.EEXIST));
            Assert.That(r.P.Close(dup), Is.Zero);

            Assert.That(r.Del(dev, g), Is.Zero);
            int refs = r.FileRefs(g);
            Assert.That(Err(r.Del(dev, g)), Is.EqualTo(Errno.ENOENT), "DEL twice");
            Assert.That(r.FileRefs(g), Is.EqualTo(refs));
            Assert.That(r.Group.Kvm, Is.Null);
            Assert.That(r.Device.Kvm, Is.SameAs(v), "DEL does not take the VM back from an open device");

            Assert.That(r.P.Close(device), Is.Zero);
            Assert.That(r.Device.Kvm, Is.Null);
            r.Close(efd, kvmFd, dev, vm, g, container);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void AGroupFileKvmHolds_OutlivesItsLastUserFd_UntilTheKvmVfioDeviceIsReleased()
    {
        Run(r =>
        {
            (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true, add: true);
            VfioGroup group = r.Group;

            Assert.That(r.P.Close(g), Is.Zero);
            Assert.That(Err(r.OpenGroup()), Is.EqualTo(Errno.EBUSY), "the group's release has not run: KVM still holds its file");
            Assert.That(group.ContainerUsersSnapshot, Is.EqualTo(1), "so it is still in its container");
            Assert.That(group.Kvm, Is.SameAs(v));

            // Releasing the kvm-vfio device (its fd's last close) drops the file; the VM fd stays.
            Assert.That(r.P.Close(dev), Is.Zero);
            Assert.That(group.Kvm, Is.Null);
            Assert.That(group.ContainerUsersSnapshot, Is.Zero, "the group's release detached the container");
            int g2 = r.OpenGroup();
            Assert.That(g2, Is.GreaterThanOrEqualTo(0));

            r.Close(g2, vm, container);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void AGroupFileKvmHolds_OutlivesItsLastUserFd_UntilTheVmIsDestroyed()
    {
        Run(r =>
        {
            (int g, _, int vm, int dev, KvmVm v) = r.SetUp(add: true);
            Assert.That(r.P.Close(g), Is.Zero);
            Assert.That(r.P.Close(vm), Is.Zero);
            Assert.That(Err(r.OpenGroup()), Is.EqualTo(Errno.EBUSY), "the device fd keeps the VM and the VM's device keeps the file");
            Assert.That(v.IsDestroyed, Is.False);

            Assert.That(r.P.Close(dev), Is.Zero);
            Assert.That(v.IsDestroyed, Is.True);
            int g2 = r.OpenGroup();
            Assert.That(g2, Is.GreaterThanOrEqualTo(0));
            r.Close(g2);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void AGroupFileDeletedFromKvm_IsReleasedWhenUserSpaceClosesIt()
    {
        Run(r =>
        {
            (int g, _, int vm, int dev, _) = r.SetUp(add: true);
            Assert.That(r.Del(dev, g), Is.Zero);
            Assert.That(r.P.Close(g), Is.Zero);
            int g2 = r.OpenGroup();
            Assert.That(g2, Is.GreaterThanOrEqualTo(0), "nothing holds the old file");
            r.Close(g2, dev, vm);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void ADeviceOpenedAfterAdd_TakesAVmReferenceAtFirstOpen_AndDropsItAtLastClose()
    {
        Run(r =>
        {
            (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true);

            // Opened before ADD: no VM, and ADD does not hand one to an open device.
            int early = r.GetDeviceFd(g);
            Assert.That(r.Add(dev, g), Is.Zero);
            Assert.That(r.Device.Kvm, Is.Null);
            Assert.That(v.UsersCount, Is.EqualTo(2));
            Assert.That(r.P.Close(early), Is.Zero);

            int d1 = r.GetDeviceFd(g);
            Assert.That(d1, Is.GreaterThanOrEqualTo(0));
            Assert.That(r.Device.Kvm, Is.SameAs(v));
            Assert.That(v.UsersCount, Is.EqualTo(3), "VM fd, kvm-vfio fd and the open device");
            Assert.That(r.KvmAtOpen.Last(), Is.SameAs(v), "open_device sees device->kvm");

            int d2 = r.GetDeviceFd(g);
            Assert.That(v.UsersCount, Is.EqualTo(3), "only the first open takes a reference");
            Assert.That(r.P.Close(d1), Is.Zero);
            Assert.That(v.UsersCount, Is.EqualTo(3));
            Assert.That(r.P.Close(d2), Is.Zero);
            Assert.That(v.UsersCount, Is.EqualTo(2), "the last close drops it");
            Assert.That(r.Device.Kvm, Is.Null);
            Assert.That(r.KvmAtOpen.ToArray(), Is.EqualTo(new IVfioKvm?[] { null, v }));

            r.Close(dev, vm, g, container);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void DestroyingTheVm_WhileADeviceIsOpen_LeavesTheLastVmReferenceToTheDeviceClose()
    {
        Run(r =>
        {
            (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true, add: true);
            int device = r.GetDeviceFd(g);
            Assert.That(v.UsersCount, Is.EqualTo(3));

            // User space goes away in the worst order: the group fd first, then KVM, then the device.
            Assert.That(r.P.Close(g), Is.Zero);
            Assert.That(r.P.Close(dev), Is.Zero);
            Assert.That(r.Group.Kvm, Is.Null);
            Assert.That(r.P.Close(vm), Is.Zero);
            Assert.That(v.UsersCount, Is.EqualTo(1), "the open device still holds the VM");
            Assert.That(v.IsDestroyed, Is.False);
            Assert.That(r.Kvm.Vms, Has.Count.EqualTo(1));

            // The device's last close drops the VM's last reference and the group file's last
            // reference, both under vfio locks.
            Assert.That(r.P.Close(device), Is.Zero);
            Assert.That(v.UsersCount, Is.Zero);
            Assert.That(v.IsDestroyed, Is.True);
            Assert.That(r.Device.Kvm, Is.Null);
            Assert.That(r.Group.ContainerUsersSnapshot, Is.Zero, "the group's release ran");
            r.Close(container);
            r.AssertNothingLeft();
        });
    }

    [Test]
    public void CheckedExternalUsers_RequireAViableGroupInAContainerWithAnIommu_AndCountAsAContainerUser()
    {
        Run(
            r =>
            {
                (int g, _, int vm, int dev, KvmVm v) = r.SetUp();
                Assert.That(Err(r.Add(dev, g)), Is.EqualTo(Errno.EINVAL), "not in a container");
                int container = r.AttachContainer(g, setIommu: false);
                Assert.That(Err(r.Add(dev, g)), Is.EqualTo(Errno.EINVAL), "no IOMMU driver yet");
                Assert.That(r.Vfio.SetIommu(container), Is.Zero);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1));

                r.Vfio.Kernel.Faults.FailNth(1, KvmVfio.GroupAllocFaultSite);
                Assert.That(Err(r.Add(dev, g)), Is.EqualTo(Errno.ENOMEM));
                r.Vfio.Kernel.Faults.Disarm();
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1), "a failed ADD gives its container use back");
                Assert.That(r.Group.Kvm, Is.Null);

                Assert.That(r.Add(dev, g), Is.Zero);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(2), "KVM is a container user");
                Assert.That(r.FileRefs(g), Is.EqualTo(1), "and holds the group, not the file");
                Assert.That(r.Group.Kvm, Is.SameAs(v));
                Assert.That(v.NoncoherentDmaCount, Is.EqualTo(1), "the backend does not claim VFIO_DMA_CC_IOMMU");
                Assert.That(Err(r.Add(dev, g)), Is.EqualTo(Errno.EEXIST));
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(2));
                Assert.That(Err(r.Vfio.UnsetContainer(g)), Is.EqualTo(Errno.EBUSY));

                Assert.That(r.Del(dev, g), Is.Zero);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1));
                Assert.That((v.NoncoherentDmaCount, v.AssignedDeviceCount), Is.EqualTo((0, 0)));
                Assert.That(r.Group.Kvm, Is.Null);
                Assert.That(Err(r.Del(dev, g)), Is.EqualTo(Errno.ENOENT));
                Assert.That(r.Vfio.UnsetContainer(g), Is.Zero);

                r.Close(dev, vm, g, container);
                r.AssertNothingLeft();
            },
            VfioExternalUsers.Checked);
    }

    [Test]
    public void CheckedExternalUser_ReleasedWithTheKvmVfioDevice_GivesBackItsContainerUse()
    {
        Run(
            r =>
            {
                (int g, int container, int vm, int dev, _) = r.SetUp(container: true, add: true);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(2));
                Assert.That(r.P.Close(dev), Is.Zero);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1));
                Assert.That(r.Group.Kvm, Is.Null);
                Assert.That(r.Vfio.UnsetContainer(g), Is.Zero);
                r.Close(vm, g, container);
                r.AssertNothingLeft();
            },
            VfioExternalUsers.Checked);
    }

    [Test]
    public void UncheckedExternalUsers_TakeAGroupWithoutAContainer_AndKvmsCoherencyCheckThenDereferencesTheMissingContainer()
    {
        // Seed 004 in docs/races.md: nothing checked the group, and kvm-vfio's coherency check
        // (vfio_external_check_extension) reads group->container as it is.
        var r = new KvmRig(users: VfioExternalUsers.Unchecked);
        RunResult run = r.Vfio.Sim.Run(() => r.SetUp(add: true));
        Assert.That(run.Outcome, Is.EqualTo(RunOutcome.Panic), run.Report);
        Assert.That(run.Exception?.Message, Does.Contain("NULL pointer dereference in vfio_ioctl_check_extension").And.Contain("in no container"));
    }

    [Test]
    public void UncheckedExternalUsers_AreNoContainerUser_SoUnsetContainerIsNotHeldUp()
    {
        Run(
            r =>
            {
                (int g, int container, int vm, int dev, KvmVm v) = r.SetUp(container: true, add: true);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1), "the first posting counted nothing");
                Assert.That(r.Group.Kvm, Is.SameAs(v));
                Assert.That(r.FileRefs(g), Is.EqualTo(1), "KVM holds the group, not the file");
                Assert.That(r.Del(dev, g), Is.Zero);
                Assert.That(r.Group.Kvm, Is.Null);
                Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1), "and gives nothing back");
                Assert.That(r.Vfio.UnsetContainer(g), Is.Zero);
                r.Close(dev, vm, g, container);
                r.AssertNothingLeft();
            },
            VfioExternalUsers.Unchecked);
    }

    [Test]
    public void TheFileApi_TakesAGroupWithoutAContainer_AndIsNoContainerUser()
    {
        Run(r =>
        {
            (int g, _, int vm, int dev, _) = r.SetUp(add: true);
            Assert.That(r.Group.ContainerUsersSnapshot, Is.Zero);
            int container = r.AttachContainer(g);
            Assert.That(r.Group.ContainerUsersSnapshot, Is.EqualTo(1), "KVM does not count");
            Assert.That(r.Vfio.UnsetContainer(g), Is.Zero, "so UNSET_CONTAINER is not held up");
            Assert.That(r.Del(dev, g), Is.Zero);
            r.Close(dev, vm, g, container);
            r.AssertNothingLeft();
        });
    }
}
