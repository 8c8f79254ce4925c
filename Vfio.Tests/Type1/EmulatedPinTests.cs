// Emulated-IOMMU access through the type1 backend: vfio_pin_pages / vfio_unpin_pages /
// vfio_dma_rw and the dma_unmap notification (vfio_main.c and vfio_iommu_type1.c: external
// pins are charged only without an IOMMU domain; an unmap of pinned pages calls every
// dma_unmap op and rescans; peer case T1-31, see docs/conformance.md).

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using static Vfio.Tests.Type1.Type1Kit;

namespace Vfio.Tests.Type1;

[TestFixture]
public sealed class EmulatedPinTests
{
    private const ulong A = 0x100000;

    [Test]
    public void PinPages_CoreArgumentChecksComeFirst()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A, 0, RW), Errno.EINVAL, before);
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A, VfioDevice.PinPagesMaxEntries + 1, RW), Errno.E2BIG, before);
            Assert.That(ops.Pinned, Is.Empty);
        });
    }

    [Test]
    public void PinPages_V1ContainerIsEacces()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu(VfioExtension.Type1);
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A, 1, RW), Errno.EACCES, before);
            byte[] b = new byte[8];
            Assert.That(rig.Edu().DmaRw(A, b, write: true), Is.Zero, "dma_rw has no v2 requirement");
        });
    }

    [Test]
    public void PinPages_DeviceWithoutDmaUnmapIsEinval()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            rig.EmulatedNext(withDmaUnmap: false); // default test ops: no dma_unmap, so never registered with type1
            (int c, _, _) = rig.OpenEdu();
            Assert.That(rig.Iommu(c).RegisteredDevices, Is.Zero);
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Type1State before = rig.State(c);
            ulong[] pfns = new ulong[1];
            rig.AssertRejected(c, rig.Edu().PinPages(A, RW, pfns), Errno.EINVAL, before);
        });
    }

    [Test]
    public void PinPages_UnmappedIovaAndMissingProtectionAreRejectedAllOrNothing()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), 2 * P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Type1State before = rig.State(c);
            Assert.That(before.LockedVm, Is.EqualTo(1), "no IOMMU domain: the pin is charged");

            // Four pages pinned (across both mappings), then the fifth is not mapped.
            ulong[] pfns = new ulong[5];
            Array.Fill(pfns, 0xdeadUL);
            rig.AssertRejected(c, rig.Edu().PinPages(A + (2 * P), R, pfns), Errno.EINVAL, before);
            Assert.That(ErrorReason.Current, Does.Contain("not mapped"));
            Assert.That(pfns, Is.All.Zero, "pages already pinned by the call were given back");
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A + (3 * P), 2, RW), Errno.EPERM, before);
            Assert.That(ErrorReason.Current, Does.Contain("lacks protection"));
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A + (8 * P), 1, R), Errno.EINVAL, before);
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.EqualTo(1));
            Assert.That(ops.Pin(rig.Edu(), A + (4 * P), 2, R), Is.EqualTo(2), "read pins of a read-only mapping");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(3));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void PinPages_RepeatedPinsShareOneVfioPfnAndUnpinDropsTheChargeAtZero()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0), "MAP pins nothing without an IOMMU domain");
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            ulong[] p1 = new ulong[2], p2 = new ulong[2];
            Assert.That(ops.Pin(rig.Edu(), A, 2, RW, p1), Is.EqualTo(2), ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 2, W, p2), Is.EqualTo(2), ErrorReason.Current);
            Assert.That(p2, Is.EqualTo(p1));
            Assert.That(p1[0], Is.EqualTo((ulong)rig.User.Mm.Translate(va)), "the frame behind the mapping owner's vaddr");
            Assert.That(rig.Memory.PinnedPages - pinned0, Is.EqualTo(2), "one page pin per vfio_pfn");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(2));
            VfioDmaInfo m = rig.Iommu(c).Mappings[0];
            Assert.That((m.PinnedByDrivers, m.LockedVm), Is.EqualTo((2, 2L)));
            rig.AssertInvariants(c);

            ops.Unpin(rig.Edu(), A, 2);
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.EqualTo(2), "still one reference each");
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(2));
            ops.Unpin(rig.Edu(), A, 2);
            Assert.That(rig.Iommu(c).Mappings[0].PinnedByDrivers, Is.Zero);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void PinPages_OverRlimitWithoutIommuDomainIsEnomemLoggedAndRolledBack()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c0, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            SimProcess p = rig.Machine.CreateProcess("qemu", Credentials.User, new ResourceLimits { MemlockBytes = (long)(3 * P) });
            int c = rig.User.SendFd(c0, p);
            Assert.That(c, Is.GreaterThanOrEqualTo(0));
            ulong va = rig.Buffer(16 * P, p);
            Assert.That(Type1Rig.Map(p, c, va, A, 16 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(1));
            Type1State before = rig.State(c, p, p);
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A + (4 * P), 3, RW), Errno.ENOMEM, before, p, p);
            Assert.That(rig.Kernel.Log.Contains($"Task qemu ({p.Pid}) RLIMIT_MEMLOCK ({3 * P}) exceeded"), Is.True, rig.Kernel.Log.Dmesg());

            // Re-pinning an already pinned page needs no new charge.
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + P, 2, RW), Is.EqualTo(2), ErrorReason.Current);
            Assert.That(p.Mm.LockedVm, Is.EqualTo(3));
            rig.AssertInvariants(c, p);
        });
    }

    [Test]
    public void PinPages_WithAnIommuDomainAreNotChargedAgain()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            var ops = new PinningTestDevice();
            rig.Core.Driver.CustomOps = ops; // a pinning device in an IOMMU-backed group
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 8 * P), Is.Zero, ErrorReason.Current);
            long pinned = rig.Memory.PinnedPages;
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            Assert.That(ops.Pin(rig.Edu(), A, 3, RW), Is.EqualTo(3), ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8), "charged once, at MAP");
            Assert.That(rig.Memory.PinnedPages - pinned, Is.EqualTo(3), "the external pins hold their own page references");
            ops.Unpin(rig.Edu(), A, 3);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(8));
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void UnpinPages_OfAnUnmappedIovaWarnsAndStops()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(2 * P);
            Assert.That(rig.Map(c, va, A, 2 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 2, RW), Is.EqualTo(2), ErrorReason.Current);
            rig.Kernel.ExpectWarning("is not mapped");
            rig.Edu().UnpinPages(A + P, 2);
            VfioDmaInfo m = rig.Iommu(c).Mappings[0];
            Assert.That((m.PinnedByDrivers, m.LockedVm), Is.EqualTo((1, 1L)), "the mapped page was unpinned, then the walk stopped");
            rig.Edu().UnpinPages(A, 1);
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DmaRw_ErrnosInOrderAndCopies()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, _) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(8 * P);
            Assert.That(rig.Map(c, va, A, 2 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (2 * P), A + (2 * P), 2 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), P, VfioType1Flags.MapRead), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (5 * P), A + (5 * P), P, VfioType1Flags.MapWrite), Is.Zero, ErrorReason.Current);
            VfioDevice dev = rig.Edu();
            Type1State before = rig.State(c);

            rig.AssertRejected(c, dev.DmaRw(A, [], write: false), Errno.EINVAL, before);
            rig.AssertRejected(c, dev.DmaRw(A + (8 * P), new byte[4], write: false), Errno.EINVAL, before);
            rig.AssertRejected(c, dev.DmaRw(A + (4 * P), new byte[4], write: true), Errno.EPERM, before);
            rig.AssertRejected(c, dev.DmaRw(A + (5 * P), new byte[4], write: false), Errno.EPERM, before);
            rig.AssertRejected(c, dev.DmaRw(A + (5 * P), new byte[4], write: true), Errno.EPERM, before);

            // A user task with another mm cannot reach the owner's memory.
            SimProcess q = rig.Machine.CreateProcess("other");
            using (q.Enter())
            {
                rig.AssertRejected(c, dev.DmaRw(A, new byte[4], write: false), Errno.EFAULT, before);
            }

            // Across two mappings, from a kernel thread and from the owner itself.
            byte[] data = new byte[2 * P];
            new Random(7).NextBytes(data);
            Assert.That(dev.DmaRw(A + P, data, write: true), Is.Zero, ErrorReason.Current);
            byte[] back = new byte[2 * P];
            Assert.That(rig.User.Mm.ReadUser(va + P, back), Is.Zero);
            Assert.That(back, Is.EqualTo(data));
            byte[] again = new byte[2 * P];
            using (rig.User.Enter())
            {
                Assert.That(dev.DmaRw(A + P, again, write: false), Is.Zero, ErrorReason.Current);
            }

            Assert.That(again, Is.EqualTo(data));
            // A copy running off the end of the mapped space fails once it gets there.
            Assert.That(dev.DmaRw(A + (3 * P), new byte[3 * P], write: false), Is.EqualTo(Errno.EPERM.Negative()), "the third page is write-only");
            Assert.That(rig.State(c), Is.EqualTo(before));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void DmaRw_OwnerGoneIsEperm()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c0, _, _, _) = rig.OpenEmulatedEdu();
            SimProcess p = rig.Machine.CreateProcess("qemu");
            int c = rig.User.SendFd(c0, p);
            ulong va = rig.Buffer(2 * P, p);
            Assert.That(Type1Rig.Map(p, c, va, A, 2 * P), Is.Zero, ErrorReason.Current);
            p.Exit();
            Type1State before = rig.State(c0);
            rig.AssertRejected(c0, rig.Edu().DmaRw(A, new byte[4], write: false), Errno.EPERM, before);
            Assert.That(ErrorReason.Current, Does.Contain("exited"));
            rig.AssertRejected(c0, rig.Edu().PinPages(A, RW, new ulong[1]), Errno.ENODEV, before);
            Assert.That(rig.Unmap(c0, A, 2 * P, out ulong un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(2 * P));
        });
    }

    [Test]
    public void T1_31_UnmapNotifiesDmaUnmapRestartsAndReportsTheFullSize()
    {
        var rig = new Type1Rig();
        rig.ExpectDmaUnmapLockInversion();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            long pinned0 = rig.Memory.PinnedPages;
            ulong va = rig.Buffer(16 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (4 * P), A + (4 * P), 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Map(c, va + (8 * P), A + (8 * P), 8 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + P, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + P, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A + (9 * P), 3, RW), Is.EqualTo(3), ErrorReason.Current);
            Assert.That(rig.User.Mm.LockedVm, Is.EqualTo(4));

            Assert.That(rig.Unmap(c, A, 16 * P, out ulong un), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(16 * P));
            Assert.That(ops.UnmapCalls, Is.EqualTo(new[] { (A, 4 * P), (A + (8 * P), 8 * P) }), "one notification per pinned mapping, with the whole mapping");
            Assert.That(ops.Pinned, Is.Empty);
            Assert.That(rig.Iommu(c).Mappings, Is.Empty);
            Assert.That(rig.Iommu(c).DmaAvail, Is.EqualTo(rig.Iommu(c).EntryLimit));
            Assert.That(rig.User.Mm.LockedVm, Is.Zero);
            Assert.That(rig.Memory.PinnedPages, Is.EqualTo(pinned0));
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void T1_31_DriverThatKeepsItsPinsIsAKernelBugAfterTenRetries()
    {
        var rig = new Type1Rig();
        PinningTestDevice? ops = null;
        RunResult r = rig.Kernel.Run("main", () =>
        {
            (int c, _, _, ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            ops.IgnoreUnmap = true;
            rig.Unmap(c, A, 4 * P, out _);
            Assert.Fail("UNMAP returned although the driver kept its pins");
        });
        Runs.AssertOutcome(r, RunOutcome.Panic);
        Assert.That(r.Exception, Is.InstanceOf<KernelPanicException>());
        Assert.That(r.Exception!.Message, Does.Contain("kernel BUG").And.Contain("vfio_dma_do_unmap"));
        Assert.That(ops!.UnmapCalls, Has.Count.EqualTo(VfioIommu.DmaUnmapRetryLimit + 1), "the first notification and ten retries");
        Assert.That(ops.UnmapCalls.Distinct(), Is.EqualTo(new[] { (A, 4 * P) }));
    }

    // The EBUSY of pin and dma_rw while a vaddr is invalid cannot be reached with an emulated
    // group (UNMAP with VADDR is EBUSY then, and an emulated group cannot attach while a vaddr
    // is invalid); it is reached by a pinning device in an IOMMU-backed group, which the kernel
    // allows too (vfio_pin_pages only needs ops->dma_unmap).
    [Test]
    public void PinAndDmaRw_WhileAVaddrIsInvalidAreEbusyWithAWarning()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            var ops = new PinningTestDevice();
            rig.Core.Driver.CustomOps = ops;
            (int c, _, _) = rig.OpenEdu();
            ulong va = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(rig.Unmap(c, A, 4 * P, out ulong un, VfioType1Flags.UnmapVaddr), Is.Zero, ErrorReason.Current);
            Assert.That(un, Is.EqualTo(4 * P));
            Type1State before = rig.State(c);
            rig.Kernel.ExpectWarning("vfio_pin_pages not allowed with VFIO_UPDATE_VADDR");
            rig.Kernel.ExpectWarning("vfio_dma_rw not allowed with VFIO_UPDATE_VADDR");
            rig.AssertRejected(c, ops.Pin(rig.Edu(), A, 1, RW), Errno.EBUSY, before);
            rig.AssertRejected(c, rig.Edu().DmaRw(A, new byte[4], write: false), Errno.EBUSY, before);
            Assert.That(rig.Map(c, va, A, 4 * P, VfioType1Flags.MapVaddr), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Assert.That(rig.Edu().DmaRw(A, new byte[4], write: false), Is.Zero, ErrorReason.Current);
            ops.Unpin(rig.Edu(), A, 1);
            rig.AssertInvariants(c);
        });
    }

    [Test]
    public void UnmapVaddr_WithAnEmulatedGroupAttachedIsEbusy()
    {
        var rig = new Type1Rig();
        rig.Run(() =>
        {
            (int c, _, _, PinningTestDevice ops) = rig.OpenEmulatedEdu();
            ulong va = rig.Buffer(4 * P);
            Assert.That(rig.Map(c, va, A, 4 * P), Is.Zero, ErrorReason.Current);
            Assert.That(ops.Pin(rig.Edu(), A, 1, RW), Is.EqualTo(1), ErrorReason.Current);
            Type1State before = rig.State(c);
            rig.AssertRejected(c, rig.Unmap(c, A, 4 * P, out ulong un, VfioType1Flags.UnmapVaddr), Errno.EBUSY, before);
            Assert.That(ErrorReason.Current, Does.Contain("emulated"));
            Assert.That(rig.User.Ioctl(c, VfioIoctl.CheckExtension, VfioExtension.UpdateVaddr), Is.Zero);
            Assert.That(ops.UnmapCalls, Is.Empty);
            ops.Unpin(rig.Edu(), A, 1);
        });
    }
}
