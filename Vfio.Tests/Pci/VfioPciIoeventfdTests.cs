// Tests Vfio.Pci/VfioPciCoreDevice.Ioeventfd.cs: VFIO_DEVICE_IOEVENTFD's checks in the
// kernel's order (each rejected call leaving no entry and no eventfd reference behind),
// add / remove / EEXIST / ENODEV / the 1000-entry limit, a signal performing the write in
// the device (edu's liveness and DMA registers, the NIC's I/O-free BARs), sizes 1/2/4/8,
// writes dropped while memory decode is off, deferral while memory_lock is held for write,
// and teardown at close. The expected answers are those of the real 6.1.192 and 6.12.118
// (edu and e1000e behind vfio-pci), which agree on every one.

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciIoeventfdTests
{
    private static readonly KernelProfile[] s_profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    private static void WithOpen(string bdf, Action<VfioPciRig, int> body, KernelProfile? profile = null, SchedulerMode mode = SchedulerMode.Controlled)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(mode).UseProfile(profile ?? KernelProfile.Linux6_12).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(bdf);
            body(rig, d);
            rig.CloseAll((c, g, d));
        }));
    }

    private static long Ioev(VfioPciRig rig, int d, uint flags, long offset, ulong data, int fd, uint argsz = 32)
    {
        var req = new VfioDeviceIoeventfd { Argsz = argsz, Flags = flags, Offset = (ulong)offset, Data = data, Fd = fd };
        return rig.Ioctl(d, VfioIoctl.DeviceIoeventfd, ref req);
    }

    private static long Bar(int index, long offset = 0) => VfioPciIndex.IndexToOffset(index) + offset;

    private static void Poke(VfioPciRig rig, int efd) => Assert.That(rig.P.Write(efd, BitConverter.GetBytes(1UL)), Is.EqualTo(8));

    private static int Efd(VfioPciRig rig) => rig.P.Eventfd(0, EventFdContext.EFD_NONBLOCK);

    private static void Rejected(VfioPciRig rig, int d, int efd, long ret, Errno errno, string what)
    {
        Assert.That(ret, Is.EqualTo(errno.Negative()), $"{what}: {ErrorReason.Current}");
        Assert.That(rig.Vdev(VfioPciRig.Edu).IoeventfdCount, Is.Zero, $"{what}: an entry was left behind");
        Assert.That(rig.EventFdRefs(efd), Is.EqualTo(1), $"{what}: an eventfd reference was left behind");
    }

    [Test]
    public void EveryCheck_IsMadeInTheKernelsOrder_AndARejectedCallLeavesNothingBehind([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            int nul = rig.P.Open("/dev/null");

            // vfio_pci_ioctl_ioeventfd: argsz, unknown flags, one size, fd >= -1 — before the offset is looked at.
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0), 0, e, argsz: 27), Errno.EINVAL, "argsz 27");
            Rejected(rig, d, e, Ioev(rig, d, 0x14, Bar(9), 0, e), Errno.EINVAL, "an unknown flag with a size");
            Rejected(rig, d, e, Ioev(rig, d, 0, Bar(0), 0, e), Errno.EINVAL, "no size");
            Rejected(rig, d, e, Ioev(rig, d, 3, Bar(0), 0, e), Errno.EINVAL, "two sizes");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(9), 0, -2), Errno.EINVAL, "fd -2 (before the region check)");

            // vfio_pci_ioeventfd: BARs only, inside the BAR.
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(VfioPciIndex.Rom), 0, e), Errno.EINVAL, "the ROM");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(VfioPciIndex.Config), 0, e), Errno.EINVAL, "config space");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(VfioPciIndex.Vga), 0, e), Errno.EINVAL, "VGA");
            Rejected(rig, d, e, Ioev(rig, d, 1, Bar(1), 0, e), Errno.EINVAL, "an absent BAR");
            Rejected(rig, d, e, Ioev(rig, d, 8, Bar(0, EduDevice.MmioSize - 4), 0, e), Errno.EINVAL, "8 bytes at the last dword");
            Rejected(rig, d, e, Ioev(rig, d, 1, Bar(0, EduDevice.MmioSize), 0, e), Errno.EINVAL, "past the end");

            // Then the list: fd -1 with no match, a bad fd, a file that is not an eventfd.
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0, 4), 1, -1), Errno.ENODEV, "removing what is not there");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0, 4), 1, 999), Errno.EBADF, "a closed fd");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0, 4), 1, nul), Errno.EINVAL, "/dev/null");
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0, 4), 1, -1), Errno.ENODEV, "the bad fds added nothing");

            // The last byte, an unaligned dword and 8 bytes are all fine (x86-64 has iowrite64).
            Assert.That(Ioev(rig, d, 1, Bar(0, EduDevice.MmioSize - 1), 0, e), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, 3), 0, e), Is.Zero);
            Assert.That(Ioev(rig, d, 8, Bar(0, 0x80), 0, e), Is.Zero);
            Assert.That(rig.Vdev(VfioPciRig.Edu).IoeventfdCount, Is.EqualTo(3));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(4), "each entry holds the eventfd");
            Assert.That(Ioev(rig, d, 1, Bar(0, EduDevice.MmioSize - 1), 0, -1), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, 3), 0, -1), Is.Zero);
            Assert.That(Ioev(rig, d, 8, Bar(0, 0x80), 0, -1), Is.Zero);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1));
            rig.P.Close(nul);
            rig.P.Close(e);
        }, profile);
    }

    [Test]
    public void BI_05_IoeventfdWithArgszOneBelowMinsz_IsEinval()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            Rejected(rig, d, e, Ioev(rig, d, 4, Bar(0, 4), 1, e, argsz: VfioDeviceIoeventfd.MinSz - 1), Errno.EINVAL, "argsz 27");
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 1, e, argsz: VfioDeviceIoeventfd.MinSz), Is.Zero, "28 reaches fd: enough");
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 1, -1), Is.Zero);
        }, mode: SchedulerMode.Real);
    }

    [Test]
    public void TheSameBarOffsetSizeAndData_IsEexist_WhateverTheEventfd_AndAnyOtherDataOrSizeIsANewEntry()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig), e2 = Efd(rig);
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 0x12345678, e), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 0x12345678, e2), Is.EqualTo(Errno.EEXIST.Negative()));
            Assert.That(rig.EventFdRefs(e2), Is.EqualTo(1), "EEXIST took no reference");
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 0x1_12345678, e2), Is.Zero, "data is compared as 64 bits, even for a 4-byte entry");
            Assert.That(Ioev(rig, d, 2, Bar(0, 4), 0x12345678, e2), Is.Zero, "another size");
            Assert.That(rig.Vdev(VfioPciRig.Edu).IoeventfdCount, Is.EqualTo(3));

            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 0x12345678, -1), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, 4), 0x12345678, -1), Is.EqualTo(Errno.ENODEV.Negative()), "removed once");
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1));
        });
    }

    [Test]
    public void TheThousandAndFirstEntry_IsEnospc_AndRemovingOneMakesRoom()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            for (int i = 0; i < VfioPciCoreDevice.IoeventfdMax; i++)
            {
                Assert.That(Ioev(rig, d, 4, Bar(0, 0x80), (ulong)i, e), Is.Zero);
            }

            Assert.That(Ioev(rig, d, 4, Bar(0, 0x80), 5000, e), Is.EqualTo(Errno.ENOSPC.Negative()));
            Assert.That(Ioev(rig, d, 4, Bar(0, 0x80), 5, -1), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, 0x80), 5000, e), Is.Zero);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1 + VfioPciCoreDevice.IoeventfdMax));
        });
    }

    [Test]
    public void ASignal_WritesTheDataIntoTheDevice_AsOneAccessOfTheEntrysSize([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0), Is.EqualTo(4));
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0x12345678, e), Is.Zero);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(0xffffffffu), "nothing before the signal");
            Poke(rig, e);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(~0x12345678u), "edu's liveness register inverts what the ioeventfd wrote");
            Assert.That(rig.EventFdCount(e), Is.Zero, "the wake-up took the count");

            // edu answers only 4-byte accesses below 0x80: a 2-byte or an 8-byte entry there
            // is one access it ignores (the real kernels do the same), not two halves.
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0), Is.EqualTo(4));
            int e2 = Efd(rig), e8 = Efd(rig);
            Assert.That(Ioev(rig, d, 2, Bar(0, EduDevice.RegLiveness), 0xabcd, e2), Is.Zero);
            Assert.That(Ioev(rig, d, 8, Bar(0, 0), 0x12345678_00000000, e8), Is.Zero);
            Poke(rig, e2);
            Poke(rig, e8);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(0xffffffffu));

            // Above 0x80 edu takes 8-byte writes too: the DMA registers.
            int q = Efd(rig), b = Efd(rig);
            Assert.That(Ioev(rig, d, 8, Bar(0, EduDevice.RegDmaSource), 0x40000, q), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegDmaCount), 0x80, b), Is.Zero);
            Poke(rig, q);
            Poke(rig, b);
            Assert.That(rig.Read32(d, 0, EduDevice.RegDmaSource), Is.EqualTo(0x40000u));
            Assert.That(rig.Read32(d, 0, EduDevice.RegDmaCount), Is.EqualTo(0x80u));
        }, profile);
    }

    [Test]
    public void AnEventfdSignalledBeforeRegistration_WritesAtOnce_AndKeepsItsCount()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            Poke(rig, e);
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0), Is.EqualTo(4));
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0x11111111, e), Is.Zero);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(0xeeeeeeeeu));

            // vfio_virqfd_enable acts on the pending signal but reads nothing: the count stays.
            byte[] count = new byte[8];
            Assert.That(rig.P.Read(e, count), Is.EqualTo(8));
            Assert.That(BitConverter.ToUInt64(count), Is.EqualTo(1UL));
        });
    }

    [Test]
    public void WithMemoryDecodeOff_ASignalledWriteIsDropped_AndWritesAgainOnceDecodeIsBack()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0x12345678, e), Is.Zero);
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0), Is.EqualTo(4));
            ushort cmd = (ushort)rig.Read32(d, VfioPciIndex.Config, PciRegs.Command);
            long urBefore = rig.M.Memory.UnsupportedRequests;
            rig.P.Pwrite(d, BitConverter.GetBytes((ushort)(cmd & ~PciRegs.CommandMemory)), Bar(VfioPciIndex.Config, PciRegs.Command));
            Poke(rig, e);
            rig.P.Pwrite(d, BitConverter.GetBytes(cmd), Bar(VfioPciIndex.Config, PciRegs.Command));
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(0xffffffffu), "the write was dropped, as on the real kernels");
            Assert.That(rig.M.Memory.UnsupportedRequests, Is.EqualTo(urBefore), "nothing reached the bus while edu did not decode");
            Poke(rig, e);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(~0x12345678u));
        });
    }

    [Test]
    public void WhileMemoryLockIsHeldForWrite_ASignalIsDeferred_AndWrittenWhenItIsReleased([Values] SchedulerMode mode)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice vdev = rig.Vdev(VfioPciRig.Edu);
            int e = Efd(rig);
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0x12345678, e), Is.Zero);
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0), Is.EqualTo(4));

            vdev.MemoryLock.DownWrite();
            Poke(rig, e);
            Assert.That(vdev.IoeventfdsDeferred, Is.EqualTo(1), "the handler could only try the lock");
            byte[] raw = new byte[4];
            rig.M.Memory.Read(rig.Dev(VfioPciRig.Edu).ResourceStart(0) + EduDevice.RegLiveness, raw);
            Assert.That(BitConverter.ToUInt32(raw), Is.EqualTo(0xffffffffu), "nothing written while the lock is held");
            vdev.MemoryLock.UpWrite();

            // Removing the entry flushes its inject work: the deferred write has landed.
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0x12345678, -1), Is.Zero);
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(~0x12345678u));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1));
        }, mode: mode);
    }

    [Test]
    public void TheMsixTable_CannotBeTheTargetOfAnIoeventfd_ButTheRestOfItsBarAndOtherBarsCan()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e = Efd(rig);
            long tableEnd = NicDevice.MsixTableOffset + (NicDevice.Vectors * 16);
            Assert.That(Ioev(rig, d, 4, Bar(4, 0), 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(Ioev(rig, d, 4, Bar(4, tableEnd - 4), 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(Ioev(rig, d, 4, Bar(4, tableEnd - 2), 0, e), Is.EqualTo(Errno.EINVAL.Negative()), "straddling the end");
            Assert.That(Ioev(rig, d, 4, Bar(4, tableEnd), 0, e), Is.Zero);
            Assert.That(Ioev(rig, d, 4, Bar(2, 0x100), 0xcafe, e), Is.Zero);
            Poke(rig, e);
            Assert.That(rig.Read32(d, 2, 0x100), Is.EqualTo(0xcafeu), "the NIC's on-board memory took the write");

            // 1- and 2-byte entries write only their bytes (the data's low ones).
            int e1 = Efd(rig), e2 = Efd(rig);
            Assert.That(Ioev(rig, d, 1, Bar(2, 0x101), 0x1234_5677, e1), Is.Zero);
            Assert.That(Ioev(rig, d, 2, Bar(2, 0x102), 0x1234_4321, e2), Is.Zero);
            Poke(rig, e1);
            Poke(rig, e2);
            Assert.That(rig.Read32(d, 2, 0x100), Is.EqualTo(0x432177feu));
            Assert.That(rig.Vdev(VfioPciRig.Nic).IoeventfdCount, Is.EqualTo(4));
        });
    }

    [Test]
    public void AnIoBar_TakesIoeventfds_ThroughThePortSpace()
    {
        const string virtio = "0000:04:01.0"; // BAR0: 32 I/O ports
        WithOpen(virtio, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(Ioev(rig, d, 4, Bar(0, 32), 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(Ioev(rig, d, 4, Bar(0, 8), 0x5a5a5a5a, e), Is.Zero);
            Poke(rig, e);
            Assert.That(rig.Read32(d, 0, 8), Is.EqualTo(0x5a5a5a5au), "the ports took the write");
            Assert.That(rig.Vdev(virtio).IoeventfdCount, Is.EqualTo(1));
            Assert.That(rig.Vdev(virtio).IoeventfdsDeferred, Is.Zero, "I/O BARs do not need memory_lock");
        });
    }

    [Test]
    public void ClosingTheDevice_DropsEveryIoeventfd_AndTheirEventfdReferences([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseProfile(profile).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            int e = Efd(rig);
            for (int i = 0; i < 5; i++)
            {
                Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), (ulong)i, e), Is.Zero);
            }

            Assert.That(rig.EventFdRefs(e), Is.EqualTo(6));
            rig.CloseAll((c, g, d));
            Assert.That(rig.Vdev(VfioPciRig.Edu).IoeventfdCount, Is.Zero);
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1), "close dropped every reference the ioeventfds held");

            // Reopened, the device has none: removing one is ENODEV.
            (c, g, d) = rig.Open(VfioPciRig.Edu);
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 0, -1), Is.EqualTo(Errno.ENODEV.Negative()));
            rig.CloseAll((c, g, d));
        }));
    }

    [Test]
    public void ClosingTheEventfd_DeactivatesTheIoeventfd_AndItsEntryStaysUntilRemoved()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 7, e), Is.Zero);
            EventFdContext ctx = rig.EventFd(e);
            Assert.That(rig.P.Close(e), Is.Zero);
            Runs.SleepUntil(() => ctx.ReferenceCount == 1);
            Assert.That(ctx.ReferenceCount, Is.EqualTo(1), "only this peek is left: the virqfd let go on POLLHUP");
            ctx.Put();
            Assert.That(rig.Vdev(VfioPciRig.Edu).IoeventfdCount, Is.EqualTo(1));
            Assert.That(Ioev(rig, d, 4, Bar(0, EduDevice.RegLiveness), 7, -1), Is.Zero);
        });
    }
}
