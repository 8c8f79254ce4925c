// Tests of the mtty device model (Vfio.Mdev/Samples/Mtty) through a vfio device fd, each
// expectation as the real 6.1.192 / 6.12.118 kernels answered mtty_probe.c
// (Vfio.Tests/Mdev/Oracle). The sysfs create/remove path needs the mdev core and is tested
// in MttySysfsTests once it lands.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Mdev.Samples.Mtty;

namespace Vfio.Tests.Mdev;

public sealed class MttyDeviceTests
{
    private const long EAGAIN = -(long)Errno.EAGAIN;

    private static IEnumerable<KernelProfile> Profiles => KernelProfile.Presets;

    [Test]
    public void MD_05_PortsComeFromAPoolOf24_AndInitIsEnospcWhenTooFewAreLeft()
    {
        var pool = new MttyPortPool();
        Assert.That(pool.TryReserve(2), Is.True);
        for (int i = 0; i < 10; i++)
        {
            Assert.That(pool.TryReserve(2), Is.True);
        }

        Assert.That(pool.Available, Is.EqualTo(2));
        var rig = new MttyRig();
        var k = rig.Type1.Kernel;
        var d1 = new MttyDevice(k, pool, 2, "a");
        Assert.That(d1.Init(), Is.Zero);
        var d2 = new MttyDevice(k, pool, 1, "b");
        Assert.That(d2.Init(), Is.EqualTo(Errno.ENOSPC.Negative()), "no port left");
        Assert.That(pool.Available, Is.Zero, "a failed init reserves nothing");
        d1.Release();
        Assert.That(pool.Available, Is.EqualTo(2), "release returns the ports");
    }

    [TestCaseSource(nameof(Profiles))]
    public void DeviceRegionAndIrqInfo_AreTheSamplesOnBothKernels_BI_05_And_BI_07(KernelProfile profile)
    {
        var rig = new MttyRig(profile);
        rig.Run(() =>
        {
            rig.Open(getInfo: false);

            // Before GET_INFO: region info works, IRQ info and SET_IRQS see 0 IRQ indexes.
            Assert.That(rig.Fd.GetRegionInfo(0).Info.Size, Is.EqualTo(8));
            Assert.That(() => rig.Fd.GetIrqInfo(0), Throws.TypeOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.EINVAL));
            Assert.That(rig.Trigger(0), Is.EqualTo(Errno.EINVAL.Negative()));

            Span<byte> di = stackalloc byte[20];
            BinaryPrimitives.WriteUInt32LittleEndian(di, 15);
            Assert.That(rig.Type1.User.Ioctl(rig.Fd.Fd, VfioIoctl.DeviceGetInfo, di), Is.EqualTo(Errno.EINVAL.Negative()), "BI-05 argsz 15");
            VfioDeviceInfo info = rig.Fd.GetInfo().Info;
            Assert.That((info.Flags, info.NumRegions, info.NumIrqs), Is.EqualTo((VfioDeviceFlags.Pci, 9u, 5u)), "flags PCI only (no RESET flag)");

            Span<byte> ri = stackalloc byte[32];
            BinaryPrimitives.WriteUInt32LittleEndian(ri, 31);
            Assert.That(rig.Type1.User.Ioctl(rig.Fd.Fd, VfioIoctl.DeviceGetRegionInfo, ri), Is.EqualTo(Errno.EINVAL.Negative()), "BI-05 argsz 31");
            ulong[] sizes = [8, 8, 0, 0, 0, 0, 0, 0xff, 0];
            foreach (uint idx in new uint[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 0xffffffff })
            {
                if (idx < 9)
                {
                    VfioRegionInfo r = rig.Fd.GetRegionInfo((int)idx).Info;
                    Assert.That((r.Flags, r.Size, r.Offset), Is.EqualTo((VfioRegionFlags.Read | VfioRegionFlags.Write, sizes[idx], (ulong)idx << 40)), $"region {idx}: READ|WRITE, never MMAP (RC-01, RC-04)");
                }
                else
                {
                    Assert.That(rig.InfoRaw(VfioIoctl.DeviceGetRegionInfo, idx), Is.EqualTo(Errno.EINVAL.Negative()), $"region {idx} (BI-07)");
                }
            }

            bool six12 = profile == KernelProfile.Linux6_12;
            foreach (uint idx in new uint[] { 0, 1, 2, 3, 4, 5, 6, 9, 15, 0xffffffff })
            {
                bool ok = idx is 0 or 1 || (idx == 4 && !six12);
                if (ok)
                {
                    VfioIrqInfo i = rig.Fd.GetIrqInfo((int)idx);
                    Assert.That(((uint)i.Flags, i.Count), Is.EqualTo((idx == 0 ? 0x7u : 0x9u, 1u)), $"irq {idx}");
                }
                else
                {
                    Assert.That(rig.InfoRaw(VfioIoctl.DeviceGetIrqInfo, idx), Is.EqualTo(Errno.EINVAL.Negative()), $"irq {idx} (BI-07)");
                }
            }

            Span<byte> one = stackalloc byte[1];
            Assert.That(rig.Type1.User.Pread(rig.Fd.Fd, one, 9L << 40), Is.EqualTo(Errno.EFAULT.Negative()), "region 9 read is EFAULT (RC-10 style)");
        });
    }

    [Test]
    public void ConfigSpace_IdsBarSizingAndDroppedWrites_AreTheSamples([Values(1, 2)] int ports)
    {
        var rig = new MttyRig(nrPorts: ports);
        rig.Run(() =>
        {
            rig.Open();
            VfioDeviceFd fd = rig.Fd;
            Assert.That(fd.ReadConfig32(0x00), Is.EqualTo(0x32534348u), "RC-02 vendor 4348 device 3253");
            Assert.That(fd.ReadConfig32(0x04), Is.EqualTo(0x02000001u));
            Assert.That(fd.ReadConfig32(0x08), Is.EqualTo(0x07000210u));
            Assert.That(fd.ReadConfig32(0x2c), Is.EqualTo(0x32534348u));
            Assert.That(fd.ReadConfig32(0x3c), Is.EqualTo(0x00000100u));
            Assert.That(fd.ReadConfig32(0x40), Is.EqualTo(0x80000023u));
            Assert.That(fd.ReadConfig32(0x60), Is.EqualTo(0x20494350u), "\"PCI \"");
            Assert.That(fd.ReadConfig32(0x6c), Is.EqualTo(0x00545241u));
            fd.WriteConfig32(0x10, 0xffffffff);
            Assert.That(fd.ReadConfig32(0x10), Is.EqualTo(0xfffffff9u), "BAR0 sizing");
            fd.WriteConfig32(0x10, 0xc001);
            Assert.That(fd.ReadConfig32(0x10), Is.EqualTo(0xc001u));
            fd.WriteConfig32(0x14, 0xffffffff);
            Assert.That(fd.ReadConfig32(0x14), Is.EqualTo(ports == 2 ? 0xfffffff9u : 0u), "BAR1 exists only on mtty-2");
            fd.WriteConfig32(0x18, 0xffffffff);
            Assert.That(fd.ReadConfig32(0x18), Is.Zero);
            fd.WriteConfig32(0x3c, 0xff0b);
            Assert.That(fd.ReadConfig32(0x3c), Is.EqualTo(0x10bu), "line stored, pin read-only");
            fd.WriteConfig32(0x04, 7);
            Assert.That(fd.ReadConfig32(0x04), Is.EqualTo(0x02000001u), "command/status writes dropped");
            fd.WriteConfig32(0x40, 0x12345678);
            Assert.That(fd.ReadConfig32(0x40), Is.EqualTo(0x80000023u), "unhandled writes dropped");
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void Uart_LoopbackDlabScratchFifoAndOverrun_MatchTheRealKernel(KernelProfile profile)
    {
        var rig = new MttyRig(profile);
        rig.Run(() =>
        {
            rig.Open();
            Assert.That(rig.Regs(0), Is.EqualTo("IER=00 IIR=c1 LCR=00 MCR=00 LSR=60 MSR=b3 SCR=00"));
            Assert.That(rig.Rd(0, 0), Is.Zero, "RBR of an empty FIFO");
            rig.Wr(0, 7, 0x5a);
            Assert.That(rig.Rd(0, 7), Is.EqualTo(0x5a), "scratch");
            rig.Wr(0, 3, 0x80);
            rig.Wr(0, 0, 0x0c);
            rig.Wr(0, 1, 0x00);
            Assert.That((rig.Rd(0, 0), rig.Rd(0, 1)), Is.EqualTo(((byte)0x0c, (byte)0)), "DLL/DLM under DLAB");
            rig.Wr(0, 0, 0x01);
            Assert.That(rig.Rd(0, 0), Is.EqualTo(0x0d), "the sample ORs divisor writes");
            rig.Wr(0, 3, 0x03);
            rig.WrAll(0, "hello");
            Assert.That(rig.Regs(0), Is.EqualTo("IER=00 IIR=c1 LCR=03 MCR=00 LSR=01 MSR=b3 SCR=5a"));
            rig.Wr(0, 2, 0x07);
            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x60), "FCR clears the FIFO");
            rig.WrAll(0, "hello");
            byte[] rx = [.. Enumerable.Range(0, 6).Select(_ => rig.Rd(0, 0))];
            Assert.That(rx, Is.EqualTo("hello\0"u8.ToArray()));
            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x60));
            for (int i = 0; i < 15; i++)
            {
                rig.Wr(0, 0, (byte)('A' + i));
            }

            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x01), "15 bytes");
            rig.Wr(0, 0, (byte)'P');
            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x60), "16 bytes: the full ring reads as empty, as on the real sample");
            rig.Wr(0, 0, (byte)'Q');
            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x62), "17th byte: overrun");
            Assert.That(rig.Rd(0, 0), Is.Zero, "a full ring gives nothing");
            rig.Wr(0, 2, 0x07);
            Assert.That(rig.Rd(0, 5), Is.EqualTo(0x62), "clearing the FIFO keeps OE");
            rig.Wr(0, 2, 0xc1);
            rig.Wr(0, 4, 0x23);
            Assert.That(rig.Regs(1), Is.EqualTo("IER=00 IIR=c1 LCR=00 MCR=00 LSR=60 MSR=b3 SCR=00"), "BAR1 is the second UART");
            if (profile == KernelProfile.Linux6_1)
            {
                return; // enabling THRI with no IRQ set up oopses the v6.1 sample (the test below)
            }

            rig.Wr(0, 1, 0x0f);
            Assert.That(rig.Regs(0), Is.EqualTo("IER=0f IIR=c6 LCR=03 MCR=23 LSR=62 MSR=b3 SCR=5a"), "RLSI|THRI pending");
            rig.Wr(0, 0, (byte)'x');
            Assert.That(rig.Regs(0), Is.EqualTo("IER=0f IIR=c4 LCR=03 MCR=23 LSR=01 MSR=b3 SCR=5a"), "a pushed byte clears OE; RDI at trigger level 1");
        });
    }

    [Test]
    public void Uart_OnLinux61_AnInterruptBeforeAnySetIrqs_IsTheSamplesNullDereference()
    {
        var rig = new MttyRig(KernelProfile.Linux6_1);
        Assert.That(() => rig.Run(() =>
        {
            rig.Open();
            rig.Wr(0, 1, 0x02);
        }), Throws.Exception.With.Message.Contains("NULL pointer dereference"));
    }

    [Test]
    public void Intx_IsAutomaskedAndUnmasked_MsiSignalsEveryTime_OnLinux612()
    {
        var rig = new MttyRig();
        rig.Run(() =>
        {
            rig.Open();
            int e1 = rig.Eventfd(), e2 = rig.Eventfd();
            Assert.That(rig.Trigger(0), Is.EqualTo(Errno.EINVAL.Negative()), "no INTx set up");
            Assert.That(rig.Unmask(), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.Trigger(2), Is.EqualTo(Errno.ENOTTY.Negative()), "MSI-X");
            Assert.That(rig.Trigger(3), Is.EqualTo(Errno.ENOTTY.Negative()), "ERR");
            Assert.That(rig.Trigger(4), Is.EqualTo(Errno.ENOTTY.Negative()), "REQ");
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, 0, 0, 2), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, 0, 0, 1, default, 19), Is.EqualTo(Errno.EINVAL.Negative()), "BI-05 argsz 19");
            Assert.That(rig.SetEventfd(0, e1), Is.Zero);
            Assert.That(rig.Trigger(0), Is.Zero);
            Assert.That(rig.Ev(e1), Is.EqualTo(1));
            Assert.That(rig.Trigger(0), Is.Zero);
            Assert.That(rig.Ev(e1), Is.EqualTo(EAGAIN), "automasked");
            Assert.That(rig.Unmask(), Is.Zero);
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger, 0, 0, 1, [1]), Is.Zero);
            Assert.That(rig.Ev(e1), Is.EqualTo(1));
            Assert.That(rig.Unmask(), Is.Zero);
            Assert.That(rig.Mask(), Is.Zero);
            rig.Wr(0, 1, 0x02);
            Assert.That(rig.Ev(e1), Is.EqualTo(EAGAIN), "IER THRI while masked");
            Assert.That(rig.Unmask(), Is.Zero);
            rig.Wr(0, 1, 0x00);
            rig.Wr(0, 1, 0x02);
            Assert.That(rig.Ev(e1), Is.EqualTo(1), "IER THRI fires with the FIFO empty");
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionMask, 0, 0, 1, BitConverter.GetBytes(e2)), Is.EqualTo(Errno.ENOTTY.Negative()));
            Assert.That(rig.SetEventfd(1, e2), Is.EqualTo(Errno.EINVAL.Negative()), "MSI while INTx is active");
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask, 1, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()), "MSI mask");
            Assert.That(rig.SetIrqs(VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, 0, 0, 0), Is.Zero, "INTx disable");
            Assert.That(rig.SetEventfd(1, e2), Is.Zero);
            Assert.That(rig.Trigger(1), Is.Zero);
            Assert.That(rig.Trigger(1), Is.Zero);
            Assert.That((rig.Ev(e2), rig.Ev(e1)), Is.EqualTo((2L, EAGAIN)), "MSI is not masked");
            rig.Wr(0, 2, 0x07);
            rig.Wr(0, 1, 0x01);
            rig.WrAll(0, "123");
            Assert.That(rig.Ev(e2), Is.EqualTo(1), "RDI at the trigger level only");
            rig.Wr(0, 1, 0x02);
            Assert.That(rig.Ev(e2), Is.EqualTo(EAGAIN), "THRI with data");
            for (int i = 0; i < 3; i++)
            {
                rig.Rd(0, 0);
            }

            Assert.That(rig.Ev(e2), Is.EqualTo(1), "THRI when the FIFO drains");
            rig.Wr(0, 1, 0x04);
            for (int i = 0; i < 17; i++)
            {
                rig.Wr(0, 0, (byte)'a');
            }

            Assert.That(rig.Ev(e2), Is.EqualTo(1), "RLSI on overrun");
            rig.Wr(0, 2, 0x07);
            rig.Wr(0, 1, 0x08);
            rig.Wr(0, 4, 0x0b);
            Assert.That(rig.Ev(e2), Is.EqualTo(2), "MCR OUT2 and RTS|DTR fire once each");
            rig.Wr(0, 4, 0x00);
            rig.Wr(0, 1, 0x00);
            Assert.That(rig.SetEventfd(0, e1), Is.EqualTo(Errno.EINVAL.Negative()), "INTx while MSI is active");

            // close_device drops the eventfds: after a reopen MSI is gone and INTx can be set.
            rig.Reopen();
            Assert.That(rig.Device.IrqStateForTests.Msi, Is.Null, "close dropped the MSI eventfd");
            Assert.That(rig.SetEventfd(0, e1), Is.Zero);
            rig.Wr(0, 1, 0x02);
            Assert.That((rig.Ev(e2), rig.Ev(e1)), Is.EqualTo((EAGAIN, 1L)));
        });
    }

    [Test]
    public void SetIrqs_OnLinux61_IgnoresMaskAndUnknownIndexes_AndKeepsEventfdsAfterClose()
    {
        var rig = new MttyRig(KernelProfile.Linux6_1);
        rig.Run(() =>
        {
            rig.Open();
            int e1 = rig.Eventfd();
            Assert.That(rig.Trigger(2), Is.Zero, "MSI-X accepted and ignored");
            Assert.That(rig.Unmask(), Is.Zero, "unmask accepted and ignored");
            Assert.That(rig.SetEventfd(0, e1), Is.Zero);
            Assert.That(rig.Trigger(0), Is.Zero, "a DATA_NONE trigger puts the eventfd (v6.1)");
            rig.Wr(0, 1, 0x02);
            Assert.That(rig.Ev(e1), Is.EqualTo(1), "the sample still signals the context it put (alive through the user's fd)");
            rig.Wr(0, 1, 0x00);
            rig.Wr(0, 1, 0x02);
            Assert.That(rig.Ev(e1), Is.EqualTo(1), "no automask on v6.1");
            rig.Reopen();
            Assert.That(rig.Device.IrqStateForTests.Intx, Is.Not.Null, "no close_device on v6.1");
        });
    }

    [Test]
    public void Reset_AndMigrationFeatures_AreEnottyOnLinux61()
    {
        var rig = new MttyRig(KernelProfile.Linux6_1);
        rig.Run(() =>
        {
            rig.Open();
            rig.Fd.Reset();
            Assert.That(rig.Fd.ProbeFeature(VfioFeature.Migration, VfioFeature.Get), Is.False);
            Assert.That(() => rig.Fd.Feature(VfioFeature.Migration, VfioFeature.Get, new byte[8]), Throws.TypeOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.ENOTTY));
            Assert.That(() => rig.Fd.Feature(VfioFeature.DmaLoggingStart, VfioFeature.Probe | VfioFeature.Set), Throws.TypeOf<VfioException>().With.Property(nameof(VfioException.Errno)).EqualTo(Errno.ENOTTY));
        });
    }
}
