// Tests Vfio.Pci end to end on the default machine through syscalls: bind edu to vfio-pci,
// open it through a container and its group, query it, read config and BAR0 through the
// device fd, register ERR/REQ eventfds, reset, close, unbind (peer cases DF-01, DF-08).

using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciFlowTests
{
    [Test]
    public void TheEduFlow_BindsOpensQueriesReadsResetsAndUnbinds([Values] SchedulerMode mode)
    {
        VfioPciRig.Run(mode, rig =>
        {
            rig.BindToVfio(VfioPciRig.Edu);
            Assert.That(rig.M.Vfs.Exists($"/dev/vfio/{rig.GroupId(VfioPciRig.Edu)}"), Is.True);
            Assert.That(rig.GroupId(VfioPciRig.Edu), Is.EqualTo(2));

            (int c, int g) = rig.OpenContainerAndGroup(VfioPciRig.Edu);
            long dfd = rig.GetDeviceFd(g, VfioPciRig.Edu);
            Assert.That(dfd, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            int d = (int)dfd;

            // GET_INFO: PCI, RESET (edu's bus reset worked at open), 9 regions, 5 IRQ indexes.
            var info = new VfioDeviceInfo { Argsz = 24 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref info), Is.Zero);
            Assert.That(info.Flags, Is.EqualTo(VfioDeviceFlags.Pci | VfioDeviceFlags.Reset));
            Assert.That(info.NumRegions, Is.EqualTo(9));
            Assert.That(info.NumIrqs, Is.EqualTo(5));
            Assert.That(rig.Vdev(VfioPciRig.Edu).ResetWorks, Is.True);

            // Regions: BAR0 1 MiB mmap-capable, the rest empty, ROM 0, config 256 (edu is conventional PCI), VGA EINVAL.
            Assert.That(rig.RegionInfo(d, 0, out VfioRegionInfo bar0), Is.Zero);
            Assert.That(bar0.Size, Is.EqualTo((ulong)EduDevice.MmioSize));
            Assert.That(bar0.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write | VfioRegionFlags.Mmap));
            Assert.That(bar0.Offset, Is.EqualTo(0UL));
            for (uint i = 1; i <= 5; i++)
            {
                Assert.That(rig.RegionInfo(d, i, out VfioRegionInfo bar), Is.Zero);
                Assert.That((bar.Size, bar.Flags, bar.Offset), Is.EqualTo((0UL, VfioRegionFlags.None, (ulong)i << 40)), $"BAR{i}");
            }

            Assert.That(rig.RegionInfo(d, 6, out VfioRegionInfo rom), Is.Zero);
            Assert.That((rom.Size, rom.Flags), Is.EqualTo((0UL, VfioRegionFlags.None)));
            Assert.That(rig.RegionInfo(d, 7, out VfioRegionInfo cfg), Is.Zero);
            Assert.That((cfg.Size, cfg.Flags, cfg.Offset), Is.EqualTo((256UL, VfioRegionFlags.Read | VfioRegionFlags.Write, 7UL << 40)));
            Assert.That(rig.RegionInfo(d, 8, out _), Is.EqualTo(Errno.EINVAL.Negative()));

            // Config space through the fd: vendor and device ids.
            Assert.That(rig.Read32(d, VfioPciIndex.Config, 0), Is.EqualTo(0x11e81234u));

            // BAR0: ident, and liveness reads back the inverse.
            Assert.That(rig.Read32(d, 0, EduDevice.RegIdentification), Is.EqualTo(EduDevice.Identification));
            Assert.That(rig.Write32(d, 0, EduDevice.RegLiveness, 0x12345678), Is.EqualTo(4));
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.EqualTo(~0x12345678u));

            // IRQ info: INTx pin A, MSI 1, no MSI-X, no ERR (not PCI Express), REQ 1.
            Assert.That(rig.IrqInfo(d, 0, out VfioIrqInfo intx), Is.Zero);
            Assert.That((intx.Count, intx.Flags), Is.EqualTo((1u, VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.Maskable | VfioIrqInfoFlags.Automasked)));
            Assert.That(rig.IrqInfo(d, 1, out VfioIrqInfo msi), Is.Zero);
            Assert.That((msi.Count, msi.Flags), Is.EqualTo((1u, VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize)));
            Assert.That(rig.IrqInfo(d, 2, out VfioIrqInfo msix), Is.Zero);
            Assert.That(msix.Count, Is.Zero);
            Assert.That(rig.IrqInfo(d, 3, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.IrqInfo(d, 4, out VfioIrqInfo req), Is.Zero);
            Assert.That((req.Count, req.Flags), Is.EqualTo((1u, VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize)));

            // SET_IRQS: ERR is EINVAL (count 0 on a conventional function), REQ takes an eventfd and loops back.
            int efd = rig.P.Eventfd(0);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqErr, efd), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, efd), Is.Zero, ErrorReason.Current);
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqReq, 0, 1), Is.Zero);
            Assert.That(rig.EventFdCount(efd), Is.EqualTo(1UL));

            // DEVICE_RESET: a bus reset below edu's root port.
            PciDevice edu = rig.Dev(VfioPciRig.Edu);
            long before = edu.ResetCount(PciResetKind.Bus);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceReset), Is.Zero, ErrorReason.Current);
            Assert.That(edu.ResetCount(PciResetKind.Bus), Is.EqualTo(before + 1));
            Assert.That(rig.Read32(d, 0, EduDevice.RegLiveness), Is.Zero, "liveness is back to its power-on value");

            // Close everything: the REQ eventfd reference goes with the device.
            Assert.That(rig.EventFdRefs(efd), Is.EqualTo(2));
            rig.CloseAll((c, g, d));
            Assert.That(rig.EventFdRefs(efd), Is.EqualTo(1));
            Assert.That(rig.Vdev(VfioPciRig.Edu).NeedsReset, Is.False);

            Assert.That(rig.M.Sysfs.Write("/sys/bus/pci/drivers/vfio-pci/unbind", VfioPciRig.Edu), Is.GreaterThan(0));
            Assert.That(edu.Driver, Is.Null);
            Assert.That(rig.M.Vfs.Exists($"/dev/vfio/{rig.GroupId(VfioPciRig.Edu)}"), Is.False);
        }, options: null);
    }

    [Test]
    public void AnIoBar_IsReadAndWrittenThroughThePortSpace_WhateverTheMemoryDecode([Values] SchedulerMode mode)
    {
        // 04:01.0 (behind the PCIe-to-PCI bridge) has a 32-byte I/O BAR 0; firmware placed it
        // in the port space, so GET_REGION_INFO's READ|WRITE is what read and write do.
        const string bdf = "0000:04:01.0";
        VfioPciRig.Run(mode, rig =>
        {
            var fds = rig.Open(bdf);
            Assert.That(rig.RegionInfo(fds.Device, 0, out VfioRegionInfo info), Is.Zero, ErrorReason.Current);
            Assert.That(info.Size, Is.EqualTo(32));
            Assert.That(info.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write), "an I/O BAR cannot be mmapped");
            long port = rig.Dev(bdf).ResourceStart(0);
            Assert.That(port, Is.InRange(IoPortSpace.PciStart, IoPortSpace.Size - 32));

            Assert.That(rig.Write32(fds.Device, 0, 8, 0xcafef00d), Is.EqualTo(4), ErrorReason.Current);
            Assert.That(rig.Read32(fds.Device, 0, 8), Is.EqualTo(0xcafef00du));
            Span<byte> seen = stackalloc byte[4];
            rig.M.IoPorts.Read((int)port + 8, seen);
            Assert.That(BitConverter.ToUInt32(seen), Is.EqualTo(0xcafef00du), "the write reached the device's ports");

            // Ports have no 8-byte access: an 8-byte piece is two 4-byte ones, low then high.
            Assert.That(rig.P.Pwrite(fds.Device, BitConverter.GetBytes(0x1122334455667788UL), VfioPciIndex.IndexToOffset(0) + 16), Is.EqualTo(8));
            rig.M.IoPorts.Read((int)port + 20, seen);
            Assert.That(BitConverter.ToUInt32(seen), Is.EqualTo(0x11223344u), "the high dword went to the next port dword");
            byte[] eight = new byte[8];
            Assert.That(rig.P.Pread(fds.Device, eight, VfioPciIndex.IndexToOffset(0) + 16), Is.EqualTo(8));
            Assert.That(BitConverter.ToUInt64(eight), Is.EqualTo(0x1122334455667788UL));

            // Memory decode does not gate an I/O BAR (the EIO rule is for memory BARs).
            ushort cmd = (ushort)(rig.Read32(fds.Device, VfioPciIndex.Config, PciRegs.Command) & 0xffff);
            Assert.That(rig.P.Pwrite(fds.Device, BitConverter.GetBytes((ushort)(cmd & ~PciRegs.CommandMemory)), VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command), Is.EqualTo(2));
            Assert.That(rig.Read32(fds.Device, 0, 8), Is.EqualTo(0xcafef00du));

            // Past the BAR: the start is checked, the count clamped.
            byte[] big = new byte[64];
            Assert.That(rig.P.Pread(fds.Device, big, VfioPciIndex.IndexToOffset(0) + 16), Is.EqualTo(16));
            Assert.That(rig.P.Pread(fds.Device, big, VfioPciIndex.IndexToOffset(0) + 32), Is.EqualTo(Errno.EINVAL.Negative()));
            rig.CloseAll(fds);
        });
    }

    [Test]
    public void DF_01_GetDeviceFdWithTheDeviceName_ReturnsAnFd()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            Assert.That(d, Is.GreaterThanOrEqualTo(0));
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void DF_08_EveryRegionBelowNumRegions_HasInfo_AtItsIndexShiftedOffset()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Nic);
            var info = new VfioDeviceInfo { Argsz = 24 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetInfo, ref info), Is.Zero);
            for (uint i = 0; i < info.NumRegions; i++)
            {
                long rc = rig.RegionInfo(d, i, out VfioRegionInfo r);
                Assert.That(rc, Is.EqualTo(i == VfioPciIndex.Vga ? Errno.EINVAL.Negative() : 0), $"region {i}: {ErrorReason.Current}");
                Assert.That(r.Offset, Is.EqualTo(i == VfioPciIndex.Vga ? 0 : (ulong)i << 40));
            }

            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void TheMsixBar_CarriesTheMsixMappableCapability_OrAsksForARoomierArgsz()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Nic);
            PciDevice nic = rig.Dev(VfioPciRig.Nic);
            uint bar = (uint)nic.MsixTableLocation.Bar;

            Assert.That(rig.RegionInfo(d, bar, out VfioRegionInfo small), Is.Zero);
            Assert.That(small.Flags & VfioRegionFlags.Caps, Is.EqualTo(VfioRegionFlags.Caps));
            Assert.That((small.Argsz, small.CapOffset), Is.EqualTo((40u, 0u)));

            byte[] buf = new byte[40];
            BitConverter.TryWriteBytes(buf.AsSpan(0), 40u);
            BitConverter.TryWriteBytes(buf.AsSpan(8), bar);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetRegionInfo, buf), Is.Zero);
            Assert.That(BitConverter.ToUInt32(buf, 12), Is.EqualTo(32u), "cap_offset");
            Assert.That((BitConverter.ToUInt16(buf, 32), BitConverter.ToUInt16(buf, 34), BitConverter.ToUInt32(buf, 36)), Is.EqualTo(((ushort)3, (ushort)1, 0u)));
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void ErrOnAPciExpressFunction_TakesAnEventfd_AndAnAerErrorSignalsIt()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Nic);
            Assert.That(rig.IrqInfo(d, 3, out VfioIrqInfo err), Is.Zero);
            Assert.That(err.Count, Is.EqualTo(1u));
            int efd = rig.P.Eventfd(0);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqErr, efd), Is.Zero, ErrorReason.Current);
            rig.Vdev(VfioPciRig.Nic).AerErrorDetected();
            Assert.That(rig.EventFdCount(efd), Is.EqualTo(1UL));

            Assert.That(rig.SetIrqs(d, 21, VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqErr, 0, 1, [1]), Is.Zero);
            Assert.That(rig.EventFdCount(efd), Is.EqualTo(2UL));

            // fd -1 unregisters; then DATA_NONE has nothing to signal.
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqErr, -1), Is.Zero);
            Assert.That(rig.EventFdRefs(efd), Is.EqualTo(1));
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqErr, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()));
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void VirtualBars_ReadBackWhatTheUserWroteMaskedBySize_AndNeverReachTheHardware()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            PciDevice edu = rig.Dev(VfioPciRig.Edu);
            uint hw = edu.ReadConfig(PciRegs.BaseAddress0, 4);
            Assert.That(rig.Read32(d, VfioPciIndex.Config, PciRegs.BaseAddress0), Is.EqualTo(hw));

            Assert.That(rig.Write32(d, VfioPciIndex.Config, PciRegs.BaseAddress0, 0xffffffff), Is.EqualTo(4));
            Assert.That(rig.Read32(d, VfioPciIndex.Config, PciRegs.BaseAddress0), Is.EqualTo(~(uint)(EduDevice.MmioSize - 1)), "the sizing answer");
            Assert.That(edu.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(hw), "hardware untouched");
            Assert.That(rig.Read32(d, VfioPciIndex.Config, PciRegs.BaseAddress0 + 4), Is.Zero, "BAR1 is not implemented");
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void ClearingMemoryEnable_MakesBarAccessesEio_AndSettingItBack_RestoresThem()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            byte[] cmd = new byte[2];
            Assert.That(rig.P.Pread(d, cmd, VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command), Is.EqualTo(2));
            ushort on = BitConverter.ToUInt16(cmd);
            Assert.That(on & PciRegs.CommandMemory, Is.Not.Zero);

            rig.P.Pwrite(d, BitConverter.GetBytes((ushort)(on & ~PciRegs.CommandMemory)), VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command);
            byte[] four = new byte[4];
            Assert.That(rig.P.Pread(d, four, 0), Is.EqualTo(Errno.EIO.Negative()));
            Assert.That(rig.Dev(VfioPciRig.Edu).ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.Zero, "the write reached the hardware");

            rig.P.Pwrite(d, BitConverter.GetBytes(on), VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command);
            Assert.That(rig.Read32(d, 0, 0), Is.EqualTo(EduDevice.Identification));
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void ReadAndWrite_DecodeTheRegionAndKeepToItsBounds()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            byte[] b = new byte[8];
            Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(9)), Is.EqualTo(Errno.EINVAL.Negative()), "index 9");
            Assert.That(rig.P.Pread(d, b.AsSpan(0, 0), 0), Is.Zero, "zero length");
            Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + 252), Is.EqualTo(Errno.EFAULT.Negative()), "config past 256");
            Assert.That(rig.P.Pread(d, b, EduDevice.MmioSize), Is.EqualTo(Errno.EINVAL.Negative()), "past BAR0");
            Assert.That(rig.P.Pread(d, b, EduDevice.MmioSize - 4), Is.EqualTo(4), "clamped to BAR0");
            Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(1)), Is.EqualTo(Errno.EINVAL.Negative()), "BAR1 does not exist");
            Assert.That(rig.P.Pwrite(d, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Rom)), Is.EqualTo(Errno.EINVAL.Negative()), "ROM write");
            Assert.That(rig.P.Pread(d, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Vga)), Is.EqualTo(Errno.EINVAL.Negative()), "VGA");

            // An aligned 8-byte read is one 8-byte device access, which edu answers with
            // all-ones below 0x80; a 12-byte read at 4 splits into 4 + 8 bytes.
            Assert.That(rig.P.Pread(d, b, 0), Is.EqualTo(8));
            Assert.That(BitConverter.ToUInt64(b), Is.EqualTo(ulong.MaxValue));
            byte[] twelve = new byte[12];
            Assert.That(rig.P.Pread(d, twelve, 4), Is.EqualTo(12));
            Assert.That(BitConverter.ToUInt32(twelve, 0), Is.Zero, "liveness at power-on, a 4-byte access");
            Assert.That(BitConverter.ToUInt64(twelve, 4), Is.EqualTo(ulong.MaxValue), "an 8-byte access at 8");
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void OpeningAFunctionLeftInD3hot_BringsItToD0_WithItsBarsProgrammedAgain()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            // 02:00.1 resets on D3hot->D0 (no No_Soft_Reset); its group also holds 02:00.0.
            const string fn0 = "0000:02:00.0", fn1 = "0000:02:00.1";
            rig.BindToVfio(fn0);
            rig.BindToVfio(fn1);
            PciDevice dev = rig.Dev(fn1);
            uint bar0 = dev.ReadConfig(PciRegs.BaseAddress0, 4);
            Assert.That(bar0 & ~0xfu, Is.Not.Zero);
            int pm = dev.PmCap;
            dev.WriteConfig(pm + PciRegs.PmCtrl, dev.ReadConfig(pm + PciRegs.PmCtrl, 2) | 3, 2);
            Assert.That(dev.PowerState, Is.EqualTo(3));

            (int c, int g) = rig.OpenContainerAndGroup(fn1);
            long d = rig.GetDeviceFd(g, fn1);
            Assert.That(d, Is.GreaterThanOrEqualTo(0), ErrorReason.Current);
            Assert.That(dev.PowerState, Is.Zero);
            Assert.That(dev.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(bar0), "pci_restore_bars after the reset the D3hot->D0 transition did");
            rig.CloseAll((c, g, (int)d));
        });
    }

    [Test]
    public void BarAndConfigReadsAndWrites_AllocateNothing()
    {
        long allocated = long.MaxValue;
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            long buf = rig.P.Mmap(0, 4096, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Assert.That(buf, Is.GreaterThan(0));
            long cfg = VfioPciIndex.IndexToOffset(VfioPciIndex.Config);
            Assert.That(rig.P.Pread(d, (ulong)buf, 12, EduDevice.RegLiveness), Is.EqualTo(12));
            Assert.That(rig.P.Pread(d, (ulong)buf, 64, cfg), Is.EqualTo(64));
            Assert.That(rig.P.Pread(d, (ulong)buf, 2, cfg + PciRegs.Command), Is.EqualTo(2));
            Assert.That(rig.P.Pwrite(d, (ulong)buf, 2, cfg + PciRegs.Command), Is.EqualTo(2));

            // The least of three rounds, so a one-off allocation elsewhere on the thread is not counted.
            for (int round = 0; round < 3; round++)
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                for (int i = 0; i < 100; i++)
                {
                    rig.P.Pread(d, (ulong)buf, 12, EduDevice.RegLiveness);
                    rig.P.Pwrite(d, (ulong)buf, 4, EduDevice.RegLiveness);
                    rig.P.Pread(d, (ulong)buf, 64, cfg);
                    rig.P.Pwrite(d, (ulong)buf, 4, cfg + PciRegs.InterruptLine);
                    rig.P.Pread(d, (ulong)buf, 2, cfg + PciRegs.Command);
                    rig.P.Pwrite(d, (ulong)buf, 2, cfg + PciRegs.Command);
                }

                allocated = Math.Min(allocated, GC.GetAllocatedBytesForCurrentThread() - before);
            }

            rig.CloseAll((c, g, d));
        });
        Assert.That(allocated, Is.Zero);
    }

    [Test]
    public void LoadingTwiceOrWithoutVfio_IsAProgrammingError()
    {
        VfioSim bare = VfioPciRig.Builder(SchedulerMode.Real).Build();
        Runs.AssertPassed(bare.Run(() =>
        {
            Assert.That(() => VfioPciDriver.Load(bare.Machine), Throws.InvalidOperationException);
        }));
        VfioPciRig.Run(SchedulerMode.Real, rig => Assert.That(() => VfioPciDriver.Load(rig.M), Throws.InvalidOperationException));
    }
}
