using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Devices;

/// <summary>A NIC on a fresh machine with its BARs assigned, decode and bus mastering on, and rings in RAM.</summary>
internal sealed class NicRig
{
    public const long Bar0 = 0xfd000000;
    public const long Bar2 = 0xe0000000;
    public const long Bar4 = 0xfd020000;

    public const long TxRing = 0x0800_0000;
    public const long RxRing = 0x0801_0000;
    public const long TxBuffers = 0x0802_0000;
    public const long RxBuffers = 0x0804_0000;
    public const int RingSize = 8;
    public const int RxCapacity = 2048;

    public NicRig(SchedulerMode mode, bool assign = true)
    {
        Machine = Machines.Create(mode);
        Dev = new NicDevice(Machine, new PciAddress(0, 1, 0, 0), new PciFunctionDescription { Type = "nic" });
        Assert.That(Machine.Pci.Add(Dev), Is.Zero);
        if (assign)
        {
            Dev.AssignBar(0, Bar0);
            Dev.AssignBar(2, Bar2);
            Dev.AssignBar(4, Bar4);
            Dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
        }
    }

    public SimMachine Machine { get; }

    public SimKernel Kernel => Machine.Kernel;

    public NicDevice Dev { get; }

    public uint Reg(int reg) => Cpu.Read32(Machine, Bar0 + reg);

    public void Reg(int reg, uint value) => Cpu.Write32(Machine, Bar0 + reg, value);

    /// <summary>Programs MSI-X entry <paramref name="entry"/> through BAR4 for <paramref name="vector"/>, masked or not.</summary>
    public void ProgramMsix(int entry, int vector, bool masked)
    {
        (ulong address, uint data) = InterruptController.ComposeMsiMessage(vector);
        long e = Bar4 + NicDevice.MsixTableOffset + (entry * 16);
        Cpu.Write32(Machine, e, (uint)address);
        Cpu.Write32(Machine, e + 4, (uint)(address >> 32));
        Cpu.Write32(Machine, e + 8, data);
        Cpu.Write32(Machine, e + 12, masked ? 1u : 0u);
    }

    public void EnableMsix()
    {
        int cap = Dev.MsixCap;
        Dev.WriteConfig(cap + PciRegs.MsixFlags, Dev.ReadConfig(cap + PciRegs.MsixFlags, 2) | PciRegs.MsixFlagsEnable, 2);
    }

    /// <summary>Both rings at their addresses; RX descriptors point at buffers of <see cref="RxCapacity"/> bytes.</summary>
    public void SetUpRings()
    {
        Reg(NicDevice.RegTdbal, (uint)TxRing);
        Reg(NicDevice.RegTdbah, 0);
        Reg(NicDevice.RegTdlen, RingSize);
        Reg(NicDevice.RegRdbal, (uint)RxRing);
        Reg(NicDevice.RegRdbah, 0);
        Reg(NicDevice.RegRdlen, RingSize);
        for (int i = 0; i < RingSize; i++)
        {
            WriteDescriptor(RxRing, i, (ulong)(RxBuffers + (i * 0x1000)), RxCapacity);
        }
    }

    public void WriteDescriptor(long ring, int index, ulong buffer, int length)
    {
        byte[] d = new byte[NicDevice.DescriptorSize];
        BinaryPrimitives.WriteUInt64LittleEndian(d, buffer);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), (ushort)length);
        Machine.Memory.Write(ring + (index * NicDevice.DescriptorSize), d);
    }

    /// <summary>Queues frame <paramref name="index"/> for transmission: payload in its buffer, descriptor pointing at it.</summary>
    public byte[] QueueFrame(int index, int length)
    {
        byte[] frame = Cpu.Pattern(length, index + 10);
        long buffer = TxBuffers + (index * 0x1000);
        Machine.Memory.Write(buffer, frame);
        WriteDescriptor(TxRing, index, (ulong)buffer, length);
        return frame;
    }

    public (int Length, ushort Flags) Descriptor(long ring, int index)
    {
        byte[] d = Cpu.ReadBytes(Machine, ring + (index * NicDevice.DescriptorSize), NicDevice.DescriptorSize);
        return (BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(8)), BinaryPrimitives.ReadUInt16LittleEndian(d.AsSpan(10)));
    }
}

public sealed class NicTests
{
    [Test]
    public void BarSizing_ReportsEachSizeAndItsFlags_IncludingThe64BitPrefetchablePair()
    {
        var rig = new NicRig(SchedulerMode.Real, assign: false);
        NicDevice d = rig.Dev;
        uint Size(int bar)
        {
            int reg = PciRegs.BaseAddress0 + (4 * bar);
            uint saved = d.ReadConfig(reg, 4);
            d.WriteConfig(reg, 0xffffffff, 4);
            uint mask = d.ReadConfig(reg, 4);
            d.WriteConfig(reg, saved, 4);
            return mask;
        }

        Assert.That(Size(0), Is.EqualTo(0xfffe0000), "128 KiB, 32-bit, non-prefetchable");
        Assert.That(Size(1), Is.Zero, "BAR1 is not implemented");
        Assert.That(Size(2), Is.EqualTo(0xfff0000c), "1 MiB, 64-bit (0x4), prefetchable (0x8)");
        Assert.That(Size(3), Is.EqualTo(0xffffffff), "the upper half of the 64-bit BAR");
        Assert.That(Size(4), Is.EqualTo(0xffffc000), "16 KiB");
        Assert.That(Size(5), Is.Zero);
        Assert.That(d.Bars[2]!.Kind, Is.EqualTo(PciBarKind.Memory64));
        Assert.That(d.Bars[3], Is.Null);

        Assert.That(d.ReadConfig(PciRegs.VendorId, 4), Is.EqualTo(0x10d38086));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 4) >> 8, Is.EqualTo(0x020000));
        Assert.That(d.ConfigSize, Is.EqualTo(4096));
        Assert.That(d.IsPcie, Is.True);
        Assert.That(d.PmCap, Is.Not.Zero);
        Assert.That(d.MsiCap, Is.Not.Zero);
        Assert.That(d.MsixVectors, Is.EqualTo(NicDevice.Vectors));
        Assert.That(d.MsixTableLocation, Is.EqualTo((4, 0L)));
        Assert.That(d.MsixPbaLocation, Is.EqualTo((4, 0x2000L)));
        d.InitResetMethods();
        Assert.That(d.ResetMethods, Does.Contain(PciResetMethod.Flr));
    }

    [Test]
    public void OnboardMemory_IsPlainMemoryBehindThe64BitBar()
    {
        var rig = new NicRig(SchedulerMode.Real);
        byte[] data = Cpu.Pattern(24, 1);

        Assert.That(Cpu.ReadBytes(rig.Machine, NicRig.Bar2 + 0x1230, 8), Is.All.Zero, "zero before anything is written");
        rig.Machine.Memory.Write(NicRig.Bar2 + 0x1230, data);
        Assert.That(Cpu.ReadBytes(rig.Machine, NicRig.Bar2 + 0x1230, 24), Is.EqualTo(data));
        Assert.That(Cpu.Read64(rig.Machine, NicRig.Bar2 + 0xffff8), Is.Zero, "the last bytes of the BAR");
        Assert.That(rig.Dev.Bars[2]!.RoutedAt, Is.EqualTo(NicRig.Bar2));
    }

    [Test]
    public void MsixTable_ProgrammedThroughBar4_DeliversTheCauseToItsVector()
    {
        var rig = new NicRig(SchedulerMode.Real);
        var got = new List<int>();
        int vector = rig.Machine.Interrupts.AllocVector("nic-sw", v => got.Add(v));
        rig.ProgramMsix(NicDevice.VectorSoftware, vector, masked: false);
        rig.EnableMsix();

        Assert.That(Cpu.Read32(rig.Machine, NicRig.Bar4 + (NicDevice.VectorSoftware * 16) + 8), Is.EqualTo((uint)vector), "the table reads back");
        rig.Reg(NicDevice.RegIms, NicDevice.CauseSoftware);
        rig.Reg(NicDevice.RegIcs, NicDevice.CauseSoftware);

        Assert.That(got, Is.EqualTo(new[] { vector }));
        Assert.That(rig.Reg(NicDevice.RegIcr), Is.EqualTo(NicDevice.CauseSoftware));
        rig.Reg(NicDevice.RegIcr, NicDevice.CauseSoftware);
        Assert.That(rig.Reg(NicDevice.RegIcr), Is.Zero, "write-1-to-clear");

        rig.Reg(NicDevice.RegIcs, NicDevice.CauseLink);
        Assert.That(got, Has.Count.EqualTo(1), "a cause not enabled in IMS does not signal");
        Assert.That(rig.Machine.Interrupts.Spurious, Is.Zero);
    }

    [Test]
    public void AMaskedVector_SetsItsPbaBit_AndUnmaskingDeliversIt()
    {
        var rig = new NicRig(SchedulerMode.Real);
        int delivered = 0;
        int vector = rig.Machine.Interrupts.AllocVector("nic-sw", _ => delivered++);
        rig.ProgramMsix(NicDevice.VectorSoftware, vector, masked: true);
        rig.EnableMsix();
        rig.Reg(NicDevice.RegIms, NicDevice.CauseAll);

        rig.Reg(NicDevice.RegIcs, NicDevice.CauseSoftware);
        Assert.That(delivered, Is.Zero);
        Assert.That(rig.Dev.MsixPending(NicDevice.VectorSoftware), Is.True);
        Assert.That(Cpu.Read64(rig.Machine, NicRig.Bar4 + NicDevice.MsixPbaOffset), Is.EqualTo(1UL << NicDevice.VectorSoftware), "the PBA as software reads it");

        Cpu.Write32(rig.Machine, NicRig.Bar4 + (NicDevice.VectorSoftware * 16) + 12, 0);
        Assert.That(delivered, Is.EqualTo(1), "unmasking sends the pending message");
        Assert.That(Cpu.Read64(rig.Machine, NicRig.Bar4 + NicDevice.MsixPbaOffset), Is.Zero);
    }

    [Test]
    public void WithoutMsix_InterruptsFallBackToMsiThenToIntx()
    {
        var rig = new NicRig(SchedulerMode.Real);
        int msi = 0, intx = 0;
        int vector = rig.Machine.Interrupts.AllocVector("nic-msi", _ => msi++);
        Assert.That(rig.Machine.Interrupts.RequestIntx(rig.Dev, "nic", _ => intx++), Is.Zero);
        rig.Reg(NicDevice.RegIms, NicDevice.CauseLink | NicDevice.CauseSoftware);

        Cpu.EnableMsi(rig.Dev, vector);
        rig.Reg(NicDevice.RegIcs, NicDevice.CauseSoftware);
        rig.Reg(NicDevice.RegIcs, NicDevice.CauseLink);
        Assert.That((msi, intx), Is.EqualTo((2, 0)), "one message per event, all causes on MSI vector 0");

        rig.Dev.WriteConfig(rig.Dev.MsiCap + PciRegs.MsiFlags, 0, 2);
        rig.Reg(NicDevice.RegIcr, NicDevice.CauseAll);
        rig.Reg(NicDevice.RegIcs, NicDevice.CauseSoftware);
        Assert.That(intx, Is.EqualTo(1));
        Assert.That(rig.Dev.IntxAsserted, Is.True);
        rig.Reg(NicDevice.RegImc, NicDevice.CauseSoftware);
        Assert.That(rig.Dev.IntxAsserted, Is.False, "masking the only pending cause drops the line");
        rig.Reg(NicDevice.RegIms, NicDevice.CauseSoftware);
        Assert.That(rig.Dev.IntxAsserted, Is.True, "unmasking a pending cause raises it again");
        rig.Reg(NicDevice.RegIcr, NicDevice.CauseSoftware);
        Assert.That(rig.Dev.IntxAsserted, Is.False);
        Assert.That(intx, Is.EqualTo(2));
    }

    [Test]
    public void TxInLoopback_DeliversFramesIntoTheRxRing_ByteForByte([Values] SchedulerMode mode)
    {
        var rig = new NicRig(mode);
        int rxIrqs = 0, txIrqs = 0;
        int rxVector = rig.Machine.Interrupts.AllocVector("nic-rx", _ => Interlocked.Increment(ref rxIrqs));
        int txVector = rig.Machine.Interrupts.AllocVector("nic-tx", _ => Interlocked.Increment(ref txIrqs));
        rig.ProgramMsix(NicDevice.VectorRx, rxVector, masked: false);
        rig.ProgramMsix(NicDevice.VectorTx, txVector, masked: false);
        rig.EnableMsix();
        rig.SetUpRings();
        int[] lengths = [60, 100, 1514];
        byte[][] frames = [.. lengths.Select((len, i) => rig.QueueFrame(i, len))];

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Reg(NicDevice.RegIms, NicDevice.CauseRx | NicDevice.CauseTx);
            rig.Reg(NicDevice.RegCtrl, NicDevice.CtrlEnable | NicDevice.CtrlLoopback);
            rig.Reg(NicDevice.RegRdt, NicRig.RingSize - 1);
            rig.Reg(NicDevice.RegTdt, 3);
            Runs.SpinUntil(() => rig.Reg(NicDevice.RegTdh) == 3 && rig.Reg(NicDevice.RegRdh) == 3 && Volatile.Read(ref rxIrqs) > 0 && Volatile.Read(ref txIrqs) > 0);
        });

        Runs.AssertPassed(r);
        for (int i = 0; i < 3; i++)
        {
            Assert.That(rig.Descriptor(NicRig.TxRing, i).Flags, Is.EqualTo(NicDevice.DescDone), $"TX descriptor {i} written back");
            Assert.That(rig.Descriptor(NicRig.RxRing, i), Is.EqualTo((lengths[i], (ushort)(NicDevice.DescDone | NicDevice.DescEop))), $"RX descriptor {i}");
            Assert.That(Cpu.ReadBytes(rig.Machine, NicRig.RxBuffers + (i * 0x1000), lengths[i]), Is.EqualTo(frames[i]), $"frame {i}");
        }

        Assert.That(rig.Descriptor(NicRig.RxRing, 3).Flags, Is.Zero, "the fourth buffer is untouched");
        Assert.That(rig.Reg(NicDevice.RegTxPackets), Is.EqualTo(3));
        Assert.That(rig.Reg(NicDevice.RegTxBytes), Is.EqualTo(60 + 100 + 1514));
        Assert.That(rig.Reg(NicDevice.RegRxPackets), Is.EqualTo(3));
        Assert.That(rig.Reg(NicDevice.RegRxBytes), Is.EqualTo(60 + 100 + 1514));
        Assert.That(rig.Reg(NicDevice.RegRxMissed), Is.Zero);
        Assert.That(rig.Reg(NicDevice.RegIcr) & (NicDevice.CauseRx | NicDevice.CauseTx), Is.EqualTo(NicDevice.CauseRx | NicDevice.CauseTx));
        Assert.That(rig.Reg(NicDevice.RegStatus), Is.EqualTo(NicDevice.StatusLinkUp));
        Assert.That(rig.Dev.TakeTransmitted(), Is.Empty, "loopback frames do not reach the wire");
        Assert.That(rig.Dev.DmaErrors, Is.Zero);
    }

    [Test]
    public void TxWithoutLoopback_SendsFramesToTheWire_AndFlagsABadDescriptor([Values] SchedulerMode mode)
    {
        var rig = new NicRig(mode);
        rig.SetUpRings();
        byte[] frame = rig.QueueFrame(0, 64);
        rig.WriteDescriptor(NicRig.TxRing, 1, NicRig.TxBuffers, 0);

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Reg(NicDevice.RegCtrl, NicDevice.CtrlEnable);
            rig.Reg(NicDevice.RegTdt, 2);
            Runs.SpinUntil(() => rig.Dev.TxHead == 2);
        });

        Runs.AssertPassed(r);
        IReadOnlyList<byte[]> wire = rig.Dev.TakeTransmitted();
        Assert.That(wire, Has.Count.EqualTo(1));
        Assert.That(wire[0], Is.EqualTo(frame));
        Assert.That(rig.Descriptor(NicRig.TxRing, 1).Flags, Is.EqualTo(NicDevice.DescDone | NicDevice.DescError), "a zero-length descriptor is flagged, not sent");
        Assert.That(rig.Dev.TxPackets, Is.EqualTo(1));
        Assert.That(rig.Dev.RxPackets, Is.Zero);
        Assert.That(rig.Dev.RxMissed, Is.Zero);
    }

    [Test]
    public void ADmaFault_StopsTheRingAtTheFaultingDescriptor_AndRaisesTheErrorCause([Values] SchedulerMode mode)
    {
        var rig = new NicRig(mode);
        var iommu = new WindowDmaTranslator(rig.Machine, NicRig.TxRing, 0x100000);
        rig.Machine.DmaTranslator = iommu;
        int errIrqs = 0;
        int errVector = rig.Machine.Interrupts.AllocVector("nic-err", _ => Interlocked.Increment(ref errIrqs));
        rig.ProgramMsix(NicDevice.VectorError, errVector, masked: false);
        rig.EnableMsix();
        rig.SetUpRings();
        rig.QueueFrame(0, 80);
        byte[] second = rig.QueueFrame(1, 90);
        rig.QueueFrame(2, 70);
        rig.WriteDescriptor(NicRig.TxRing, 1, 0x0900_0000, 90); // Outside the window.
        uint statusStopped = 0, headStopped = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Reg(NicDevice.RegIms, NicDevice.CauseAll);
            rig.Reg(NicDevice.RegCtrl, NicDevice.CtrlEnable | NicDevice.CtrlLoopback);
            rig.Reg(NicDevice.RegRdt, NicRig.RingSize - 1);
            rig.Reg(NicDevice.RegTdt, 3);
            Runs.SpinUntil(() => Volatile.Read(ref errIrqs) > 0);
            statusStopped = rig.Reg(NicDevice.RegStatus);
            headStopped = rig.Reg(NicDevice.RegTdh);

            // Recovery: fix the descriptor, cycle ENABLE, and the ring goes on from where it stopped.
            rig.WriteDescriptor(NicRig.TxRing, 1, NicRig.TxBuffers + 0x1000, 90);
            rig.Reg(NicDevice.RegCtrl, 0);
            rig.Reg(NicDevice.RegCtrl, NicDevice.CtrlEnable | NicDevice.CtrlLoopback);
            Runs.SpinUntil(() => rig.Dev.TxHead == 3 && rig.Dev.RxHead == 3);
        });

        Runs.AssertPassed(r);
        Assert.That(statusStopped, Is.EqualTo(NicDevice.StatusLinkUp | NicDevice.StatusTxStopped));
        Assert.That(headStopped, Is.EqualTo(1), "the head stays at the faulting descriptor");
        Assert.That(iommu.Faults, Is.EqualTo(1));
        Assert.That(rig.Dev.DmaErrors, Is.EqualTo(1));
        Assert.That(rig.Reg(NicDevice.RegDmaErrors), Is.EqualTo(1));
        Assert.That(rig.Dev.LastDmaResult, Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(rig.Dev.LastDmaError, Does.Contain("TX payload read").And.Contain("0x9000000").And.Contain("EFAULT"));
        Assert.That(rig.Reg(NicDevice.RegIcr) & NicDevice.CauseDmaError, Is.Not.Zero);
        Assert.That(rig.Reg(NicDevice.RegStatus), Is.EqualTo(NicDevice.StatusLinkUp), "re-enabling cleared the stop");
        Assert.That(Cpu.ReadBytes(rig.Machine, NicRig.RxBuffers + 0x1000, 90), Is.EqualTo(second), "after recovery the frame went through");
        Assert.That(rig.Dev.RxPackets, Is.EqualTo(3));
    }

    [Test]
    public void ControlReset_ClearsRegistersAndOnboardMemory()
    {
        var rig = new NicRig(SchedulerMode.Real);
        rig.SetUpRings();
        rig.Reg(NicDevice.RegIms, NicDevice.CauseAll);
        rig.Machine.Memory.Write(NicRig.Bar2, Cpu.Pattern(16, 3));

        rig.Reg(NicDevice.RegCtrl, NicDevice.CtrlReset);

        foreach (int reg in new[] { NicDevice.RegCtrl, NicDevice.RegIms, NicDevice.RegTdbal, NicDevice.RegTdlen, NicDevice.RegRdbal, NicDevice.RegRdlen })
        {
            Assert.That(rig.Reg(reg), Is.Zero, $"register 0x{reg:x3}");
        }

        Assert.That(Cpu.ReadBytes(rig.Machine, NicRig.Bar2, 16), Is.All.Zero);
        Assert.That(rig.Dev.Bars[0]!.RoutedAt, Is.EqualTo(NicRig.Bar0), "configuration space is untouched");
    }

    [Test]
    public void TheModel_IsRegisteredAsNic_WithIdsFromTheDescription()
    {
        SimMachine m = Machines.Create();
        PciDevice d = PciDeviceModels.Create(m, new PciAddress(0, 3, 0, 0), new PciFunctionDescription { Type = "nic", Vendor = 0x8086, Device = 0x1533 });
        Assert.That(d, Is.TypeOf<NicDevice>());
        Assert.That(d.ReadConfig(PciRegs.DeviceId, 2), Is.EqualTo(0x1533));
    }
}
