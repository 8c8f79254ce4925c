using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Devices;

/// <summary>An edu function on a fresh machine, BAR0 assigned as firmware would, decode and bus mastering on.</summary>
internal sealed class EduRig
{
    public const long Bar0 = 0xfe000000;

    // RAM below 256 MiB, inside edu's 28-bit DMA reach and above the reserved first 2 MiB.
    public const long Ram = 0x0800_0000;

    public EduRig(SchedulerMode mode, PciFunctionDescription? description = null)
    {
        Machine = Machines.Create(mode);
        Dev = new EduDevice(Machine, new PciAddress(0, 1, 0, 0), description ?? new PciFunctionDescription { Type = "edu", Pcie = false });
        Assert.That(Machine.Pci.Add(Dev), Is.Zero);
        Dev.AssignBar(0, Bar0);
        Dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
    }

    public SimMachine Machine { get; }

    public SimKernel Kernel => Machine.Kernel;

    public EduDevice Dev { get; }

    public uint Read32(int reg) => Cpu.Read32(Machine, Bar0 + reg);

    public ulong Read64(int reg) => Cpu.Read64(Machine, Bar0 + reg);

    public void Write32(int reg, uint value) => Cpu.Write32(Machine, Bar0 + reg, value);

    public void Write64(int reg, ulong value) => Cpu.Write64(Machine, Bar0 + reg, value);

    /// <summary>Programs and starts a transfer (edu.rst's sequence).</summary>
    public void StartDma(ulong src, ulong dst, ulong count, ulong cmd)
    {
        Write64(EduDevice.RegDmaSource, src);
        Write64(EduDevice.RegDmaDestination, dst);
        Write64(EduDevice.RegDmaCount, count);
        Write64(EduDevice.RegDmaCommand, cmd);
    }

    /// <summary>Polls the command register until the start bit clears, sleeping as a driver would.</summary>
    public void WaitDma() => Cpu.PollMsleep(() => (Read64(EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) == 0);

    /// <summary>An INTx handler that reads the interrupt status, acknowledges it and counts.</summary>
    public IntxCounter HandleIntx()
    {
        var c = new IntxCounter(Kernel);
        Assert.That(Machine.Interrupts.RequestIntx(Dev, "edu", _ =>
        {
            uint status = Read32(EduDevice.RegIrqStatus);
            c.Seen |= status;
            Write32(EduDevice.RegIrqAck, status);
            Interlocked.Increment(ref c.Count);
            c.Fired.Complete();
        }), Is.Zero);
        return c;
    }

    internal sealed class IntxCounter(SimKernel k)
    {
        public int Count;

        public uint Seen;

        public Completion Fired { get; } = new(k, "edu_irq");
    }
}

public sealed class EduTests
{
    private static readonly long EFAULT = Errno.EFAULT.Negative();

    [Test]
    public void TheFunction_IsQemusEdu_OnConventionalPci()
    {
        var rig = new EduRig(SchedulerMode.Real);
        EduDevice d = rig.Dev;

        Assert.That(d.ReadConfig(PciRegs.VendorId, 2), Is.EqualTo(0x1234));
        Assert.That(d.ReadConfig(PciRegs.DeviceId, 2), Is.EqualTo(0x11e8));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 1), Is.EqualTo(0x10));
        Assert.That(d.ReadConfig(PciRegs.RevisionId, 4) >> 8, Is.EqualTo(0x00ff00), "PCI_CLASS_OTHERS");
        Assert.That(d.ConfigSize, Is.EqualTo(256));
        Assert.That(d.IsPcie, Is.False);
        Assert.That(d.InterruptPin, Is.EqualTo(1), "INTA#");
        Assert.That(d.MsixCap, Is.Zero);
        Assert.That(d.MsiCap, Is.Not.Zero);
        uint msiFlags = d.ReadConfig(d.MsiCap + PciRegs.MsiFlags, 2);
        Assert.That(msiFlags & PciRegs.MsiFlags64Bit, Is.Not.Zero, "64-bit messages, as msi_init(.., 1, true, false)");
        Assert.That(msiFlags & PciRegs.MsiFlagsMaskBit, Is.Zero, "no per-vector mask");
        Assert.That(msiFlags & PciRegs.MsiFlagsQmask, Is.Zero, "one vector");
        Assert.That(d.ResourceLength(0), Is.EqualTo(1 << 20));
        Assert.That(rig.Read32(EduDevice.RegIdentification), Is.EqualTo(0x010000edu));

        // BAR sizing as __pci_read_base does it: all-ones in, size mask out, then the address back.
        d.WriteConfig(PciRegs.BaseAddress0, 0xffffffff, 4);
        Assert.That(d.ReadConfig(PciRegs.BaseAddress0, 4), Is.EqualTo(0xfff00000), "1 MiB, 32-bit, non-prefetchable memory");
        d.WriteConfig(PciRegs.BaseAddress0, (uint)EduRig.Bar0, 4);
        Assert.That(rig.Read32(EduDevice.RegIdentification), Is.EqualTo(0x010000edu));
    }

    [Test]
    public void AccessSizes_FollowEdu_BelowAndAbove0x80()
    {
        var rig = new EduRig(SchedulerMode.Real);
        SimMachine m = rig.Machine;

        Span<byte> two = stackalloc byte[2];
        m.Memory.Read(EduRig.Bar0 + EduDevice.RegIdentification, two);
        Assert.That(two.ToArray(), Is.EqualTo(new byte[] { 0xff, 0xff }), "below 0x80 only 4-byte reads count");
        Assert.That(rig.Read64(EduDevice.RegIdentification), Is.EqualTo(ulong.MaxValue));
        Assert.That(rig.Read32(0x10), Is.EqualTo(0xffffffff), "no register at 0x10");
        Assert.That(rig.Read32(EduDevice.RegIrqRaise), Is.EqualTo(0xffffffff), "the raise register is write-only");

        rig.Write64(EduDevice.RegDmaSource, 0x1234_5678_9abc_def0);
        Assert.That(rig.Read64(EduDevice.RegDmaSource), Is.EqualTo(0x1234_5678_9abc_def0));
        Assert.That(rig.Read32(EduDevice.RegDmaSource), Is.EqualTo(0x9abc_def0), "a 4-byte read returns the low half");
        Assert.That(rig.Read32(EduDevice.RegDmaSource + 4), Is.EqualTo(0xffffffff), "there is no register at 0x84");
        rig.Write32(EduDevice.RegDmaSource, 0x42);
        Assert.That(rig.Read64(EduDevice.RegDmaSource), Is.EqualTo(0x42), "a 4-byte write sets the whole register");

        m.Memory.Write(EduRig.Bar0 + EduDevice.RegLiveness, new byte[] { 1, 2 });
        Assert.That(rig.Read32(EduDevice.RegLiveness), Is.Zero, "a 2-byte write is dropped");
    }

    [Test]
    public void Liveness_ReadsTheInverseOfTheLastWrite()
    {
        var rig = new EduRig(SchedulerMode.Real);

        Assert.That(rig.Read32(EduDevice.RegLiveness), Is.Zero);
        rig.Write32(EduDevice.RegLiveness, 0x12345678);
        Assert.That(rig.Read32(EduDevice.RegLiveness), Is.EqualTo(0xedcba987));
        rig.Write32(EduDevice.RegLiveness, 0);
        Assert.That(rig.Read32(EduDevice.RegLiveness), Is.EqualTo(0xffffffff));
    }

    [Test]
    public void Factorial_RunsAsynchronously_WithTheComputingBitSetMeanwhile([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        EduRig.IntxCounter irq = rig.HandleIntx();
        uint statusRightAfter = 0, operandWhileComputing = 0, result = 0, statusAfter = 0, big = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Write32(EduDevice.RegFactorial, 10);
            statusRightAfter = rig.Read32(EduDevice.RegStatus);
            operandWhileComputing = rig.Read32(EduDevice.RegFactorial);
            rig.Write32(EduDevice.RegFactorial, 5); // Ignored while computing (only certain under the controlled scheduler).
            Cpu.PollMsleep(() => (rig.Read32(EduDevice.RegStatus) & EduDevice.StatusComputing) == 0);
            result = rig.Read32(EduDevice.RegFactorial);
            statusAfter = rig.Read32(EduDevice.RegStatus);

            rig.Write32(EduDevice.RegFactorial, 40);
            Cpu.PollMsleep(() => !rig.Dev.FactorialComputing);
            big = rig.Read32(EduDevice.RegFactorial);
        });

        Runs.AssertPassed(r);
        if (mode == SchedulerMode.Controlled)
        {
            // Virtual time stands still while main runs: the computation cannot have finished.
            Assert.That(statusRightAfter, Is.EqualTo(EduDevice.StatusComputing));
            Assert.That(operandWhileComputing, Is.EqualTo(10), "the register holds the operand until the result replaces it");
            Assert.That(result, Is.EqualTo(3628800), "10!, the second write was ignored");
        }
        else
        {
            Assert.That(result, Is.EqualTo(3628800).Or.EqualTo(120), "10!, or 5! if the first one finished before the second write");
        }

        Assert.That(statusAfter, Is.Zero);
        Assert.That(big, Is.Zero, "40! mod 2^32 is 0, as edu's 32-bit product gives");
        Assert.That(irq.Count, Is.Zero, "no interrupt without status bit 0x80");
        Assert.That(rig.Dev.InterruptStatus, Is.Zero);
    }

    [Test]
    public void Factorial_WithTheIrqBit_RaisesInterrupt0x01_WhenItFinishes([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        EduRig.IntxCounter irq = rig.HandleIntx();
        uint result = 0, status = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Write32(EduDevice.RegStatus, EduDevice.StatusIrqFactorial | EduDevice.StatusComputing);
            status = rig.Read32(EduDevice.RegStatus);
            rig.Write32(EduDevice.RegFactorial, 12);
            irq.Fired.Wait();
            result = rig.Read32(EduDevice.RegFactorial);
        });

        Runs.AssertPassed(r);
        Assert.That(status, Is.EqualTo(EduDevice.StatusIrqFactorial), "the computing bit is read-only");
        Assert.That(result, Is.EqualTo(479001600));
        Assert.That(irq.Count, Is.EqualTo(1));
        Assert.That(irq.Seen, Is.EqualTo(EduDevice.IrqFactorial));
        Assert.That(rig.Dev.InterruptStatus, Is.Zero, "the handler acknowledged");
        Assert.That(rig.Dev.IntxAsserted, Is.False);
        Assert.That(rig.Dev.FactorialsComputed, Is.EqualTo(1));
    }

    [Test]
    public void RaiseAndAcknowledge_DriveTheIntxLine_AsALevel()
    {
        var rig = new EduRig(SchedulerMode.Real);
        int handled = 0;
        Assert.That(rig.Machine.Interrupts.RequestIntx(rig.Dev, "edu", _ => handled++), Is.Zero);

        rig.Write32(EduDevice.RegIrqRaise, 0x5);
        Assert.That(handled, Is.EqualTo(1));
        Assert.That(rig.Read32(EduDevice.RegIrqStatus), Is.EqualTo(0x5));
        Assert.That(rig.Dev.IntxAsserted, Is.True);
        Assert.That(rig.Dev.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.Not.Zero);

        rig.Write32(EduDevice.RegIrqRaise, 0x2);
        Assert.That(handled, Is.EqualTo(1), "the line is already high: no new edge");
        Assert.That(rig.Read32(EduDevice.RegIrqStatus), Is.EqualTo(0x7));

        rig.Write32(EduDevice.RegIrqAck, 0x1);
        Assert.That(rig.Dev.IntxAsserted, Is.True, "bits are left");
        rig.Write32(EduDevice.RegIrqAck, 0x6);
        Assert.That(rig.Dev.IntxAsserted, Is.False);
        Assert.That(rig.Dev.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.Zero);

        rig.Write32(EduDevice.RegIrqRaise, 0x100);
        Assert.That(handled, Is.EqualTo(2), "a new raise after the acknowledge is a new edge");
        Assert.That(rig.Machine.Interrupts.Spurious, Is.Zero);
    }

    [Test]
    public void RaiseWithMsiEnabled_SendsAMessageToTheAllocatedVector_EachTime()
    {
        var rig = new EduRig(SchedulerMode.Real);
        var vectors = new List<int>();
        int vector = rig.Machine.Interrupts.AllocVector("edu-msi", v => vectors.Add(v));
        Assert.That(vector, Is.GreaterThanOrEqualTo(InterruptController.FirstVector));
        Cpu.EnableMsi(rig.Dev, vector);
        Assert.That(rig.Dev.MsiEnabled, Is.True);

        rig.Write32(EduDevice.RegIrqRaise, 0x1);
        rig.Write32(EduDevice.RegIrqRaise, 0x2);

        Assert.That(vectors, Is.EqualTo(new[] { vector, vector }), "edu_raise_irq notifies on every raise");
        Assert.That(rig.Dev.IntxAsserted, Is.False, "INTx stays quiet while MSI is enabled");
        Assert.That(rig.Read32(EduDevice.RegIrqStatus), Is.EqualTo(0x3));
        rig.Write32(EduDevice.RegIrqAck, 0x3);
        Assert.That(rig.Read32(EduDevice.RegIrqStatus), Is.Zero);
        Assert.That(rig.Machine.Interrupts.Count(vector), Is.EqualTo(2));
    }

    [Test]
    public void TheInterruptCounters_TellMsiSent_MsiBlockedWithoutBusMastering_AndIntxFallback()
    {
        var rig = new EduRig(SchedulerMode.Real);
        rig.Write32(EduDevice.RegIrqRaise, 0x1);
        Assert.That((rig.Dev.IntxRaises, rig.Dev.MsiSent, rig.Dev.MsiWithoutBusMaster), Is.EqualTo((1L, 0L, 0L)), "MSI off: INTA#");
        rig.Write32(EduDevice.RegIrqAck, 0x1);

        int vector = rig.Machine.Interrupts.AllocVector("edu-msi", _ => { });
        Cpu.EnableMsi(rig.Dev, vector);
        rig.Write32(EduDevice.RegIrqRaise, 0x1);
        Assert.That((rig.Dev.IntxRaises, rig.Dev.MsiSent, rig.Dev.MsiWithoutBusMaster), Is.EqualTo((1L, 1L, 0L)));

        rig.Dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        rig.Write32(EduDevice.RegIrqRaise, 0x2);
        Assert.That((rig.Dev.IntxRaises, rig.Dev.MsiSent, rig.Dev.MsiWithoutBusMaster), Is.EqualTo((1L, 1L, 1L)), "an MSI is a memory write: no bus mastering, no message");
        Assert.That(rig.Machine.Interrupts.Count(vector), Is.EqualTo(1));
    }

    [Test]
    public void Dma_CopiesRamToTheBufferAndBack_ByteForByte_WithTheCompletionInterrupt([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        EduRig.IntxCounter irq = rig.HandleIntx();
        byte[] data = Cpu.Pattern(100, 1);
        rig.Machine.Memory.Write(EduRig.Ram, data);
        long startNs = 0, firstDoneNs = 0;
        ulong cmdAfter = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            startNs = rig.Kernel.Clock.NowNs;
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart, 100, EduDevice.DmaCmdStart | EduDevice.DmaCmdIrq);
            irq.Fired.Wait();
            firstDoneNs = rig.Kernel.Clock.NowNs;
            cmdAfter = rig.Read64(EduDevice.RegDmaCommand);
            irq.Fired.Reinit();

            // Back out to RAM past the original, then to an offset inside the buffer (polling, as edu.rst shows).
            rig.StartDma(EduDevice.DmaBufferStart, EduRig.Ram + 0x1000, 100, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam | EduDevice.DmaCmdIrq);
            irq.Fired.Wait();
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart + 4000, 96, EduDevice.DmaCmdStart);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        byte[] buffer = rig.Dev.CopyBuffer();
        Assert.That(buffer.AsSpan(0, 100).ToArray(), Is.EqualTo(data));
        Assert.That(buffer.AsSpan(4000, 96).ToArray(), Is.EqualTo(data.AsSpan(0, 96).ToArray()));
        Assert.That(buffer.AsSpan(100, 3900).ToArray(), Is.All.Zero);
        Assert.That(Cpu.ReadBytes(rig.Machine, EduRig.Ram + 0x1000, 100), Is.EqualTo(data));
        Assert.That(cmdAfter, Is.EqualTo(EduDevice.DmaCmdIrq), "the start bit clears when the transfer is done");
        Assert.That(irq.Count, Is.EqualTo(2), "interrupt 0x100 only when the command asked for it");
        Assert.That(irq.Seen, Is.EqualTo(EduDevice.IrqDma));
        Assert.That(rig.Dev.DmaTransfers, Is.EqualTo(3));
        Assert.That(rig.Dev.DmaErrors + rig.Dev.DmaRangeErrors, Is.Zero);
        Assert.That(rig.Dev.LastDmaResult, Is.Zero);
        Assert.That(rig.Dev.LastDmaError, Is.Null);
        if (mode == SchedulerMode.Controlled)
        {
            Assert.That(firstDoneNs - startNs, Is.EqualTo(100_000_000L), "a transfer takes edu's 100 ms of virtual time");
        }
    }

    [Test]
    public void Dma_WhileATransferRuns_IgnoresWritesToItsRegisters()
    {
        // Controlled only: with real threads the 100 ms (0.1 ms of wall time) may be over before the second write.
        var rig = new EduRig(SchedulerMode.Controlled);
        rig.Machine.Memory.Write(EduRig.Ram, Cpu.Pattern(64, 2));
        ulong srcWhileRunning = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart, 64, EduDevice.DmaCmdStart);
            rig.Write64(EduDevice.RegDmaSource, 0x1000);
            rig.Write64(EduDevice.RegDmaCommand, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
            srcWhileRunning = rig.Read64(EduDevice.RegDmaSource);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        Assert.That(srcWhileRunning, Is.EqualTo(EduRig.Ram));
        Assert.That(rig.Dev.CopyBuffer().AsSpan(0, 64).ToArray(), Is.EqualTo(Cpu.Pattern(64, 2)));
        Assert.That(rig.Dev.DmaTransfers, Is.EqualTo(1));
    }

    [Test]
    public void Dma_MasksBusAddressesTo28Bits()
    {
        var rig = new EduRig(SchedulerMode.Controlled);
        byte[] data = Cpu.Pattern(32, 3);
        rig.Machine.Memory.Write(EduRig.Ram, data);

        RunResult r = rig.Kernel.Run("main", () =>
        {
            // Bits 28 and 32 lie outside the mask: the device reads 0x08000000.
            rig.StartDma(0x1_1800_0000, EduDevice.DmaBufferStart, 32, EduDevice.DmaCmdStart);
            rig.WaitDma();
            rig.StartDma(EduDevice.DmaBufferStart, 0xf000_0000 | (EduRig.Ram + 0x2000), 32, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        Assert.That(rig.Dev.DmaMask, Is.EqualTo(0x0fff_ffffUL));
        Assert.That(rig.Dev.CopyBuffer().AsSpan(0, 32).ToArray(), Is.EqualTo(data));
        Assert.That(Cpu.ReadBytes(rig.Machine, EduRig.Ram + 0x2000, 32), Is.EqualTo(data));
        Assert.That(rig.Dev.DmaAddressesClamped, Is.EqualTo(2));
        Assert.That(rig.Dev.DmaTransfers, Is.EqualTo(2));
    }

    [Test]
    public void TheDmaMaskOption_WidensTheMask()
    {
        var d = new PciFunctionDescription
        {
            Type = "edu",
            Options = new Dictionary<string, string> { ["dma_mask"] = "\"0xffffffffff\"" },
        };
        var rig = new EduRig(SchedulerMode.Real, d);
        Assert.That(rig.Dev.DmaMask, Is.EqualTo(0xff_ffff_ffffUL));
        Assert.That(rig.Dev.ConfigSize, Is.EqualTo(256), "edu is conventional PCI when the description does not say");

        Assert.That(
            () => new EduDevice(rig.Machine, new PciAddress(0, 2, 0, 0), d with { Options = new Dictionary<string, string> { ["dma_mask"] = "lots" } }),
            Throws.TypeOf<MachineDescriptionException>().With.Message.Contains("dma_mask"));
    }

    [Test]
    public void Dma_OutsideTheBuffer_IsRecorded_AndMovesNothing([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        EduRig.IntxCounter irq = rig.HandleIntx();
        rig.Machine.Memory.Write(EduRig.Ram, Cpu.Pattern(256, 4));
        ulong cmdAfter = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            // 200 bytes from 0x40f80 run past the buffer's end at 0x41000.
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart + 0xf80, 200, EduDevice.DmaCmdStart | EduDevice.DmaCmdIrq);
            irq.Fired.Wait();
            cmdAfter = rig.Read64(EduDevice.RegDmaCommand);

            // Below the buffer, towards RAM.
            rig.StartDma(0x1000, EduRig.Ram + 0x4000, 16, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        Assert.That(rig.Dev.DmaRangeErrors, Is.EqualTo(2));
        Assert.That(rig.Dev.DmaTransfers, Is.Zero);
        Assert.That(rig.Dev.LastDmaResult, Is.EqualTo(Errno.ERANGE.Negative()));
        Assert.That(rig.Dev.LastDmaError, Does.Contain("outside the buffer").And.Contain("0x1000"));
        Assert.That(rig.Dev.CopyBuffer(), Is.All.Zero);
        Assert.That(Cpu.ReadBytes(rig.Machine, EduRig.Ram + 0x4000, 16), Is.All.Zero);
        Assert.That(cmdAfter & EduDevice.DmaCmdStart, Is.Zero, "the command still completes");
        Assert.That(irq.Seen, Is.EqualTo(EduDevice.IrqDma), "with its completion interrupt");
    }

    [Test]
    public void Dma_ThatTheIommuFaults_IsCountedAndReported_NotSilent([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        var iommu = new WindowDmaTranslator(rig.Machine, EduRig.Ram, 0x10000);
        rig.Machine.DmaTranslator = iommu;
        EduRig.IntxCounter irq = rig.HandleIntx();
        byte[] data = Cpu.Pattern(64, 5);
        rig.Machine.Memory.Write(EduRig.Ram + 0x20000, data);
        rig.Machine.Memory.Write(EduRig.Ram, data);

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.StartDma(EduRig.Ram + 0x20000, EduDevice.DmaBufferStart, 64, EduDevice.DmaCmdStart | EduDevice.DmaCmdIrq);
            irq.Fired.Wait();
            rig.StartDma(EduDevice.DmaBufferStart, EduRig.Ram + 0x30000, 64, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        Assert.That(iommu.Faults, Is.EqualTo(2));
        Assert.That(iommu.LastRequesterId, Is.EqualTo(rig.Dev.RequesterId));
        Assert.That(rig.Dev.DmaErrors, Is.EqualTo(2));
        Assert.That(rig.Dev.DmaTransfers, Is.Zero);
        Assert.That(rig.Dev.LastDmaResult, Is.EqualTo(EFAULT));
        Assert.That(rig.Dev.LastDmaError, Does.Contain("EFAULT").And.Contain("0x8030000"));
        Assert.That(rig.Dev.CopyBuffer(), Is.All.Zero, "nothing arrived from the faulting read");
        Assert.That(irq.Seen, Is.EqualTo(EduDevice.IrqDma), "the command completed and interrupted");

        // Inside the window the same translator lets the transfer through.
        RunResult again = rig.Kernel.Run("main", () =>
        {
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart, 64, EduDevice.DmaCmdStart);
            rig.WaitDma();
        });
        Runs.AssertPassed(again);
        Assert.That(rig.Dev.CopyBuffer().AsSpan(0, 64).ToArray(), Is.EqualTo(data));
        Assert.That(rig.Dev.LastDmaResult, Is.Zero);
        Assert.That(rig.Dev.LastDmaError, Does.Contain("EFAULT"), "the last error stays until another one");
    }

    [Test]
    public void Dma_WithoutBusMastering_FailsWithEio([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode);
        rig.Dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        rig.Machine.Memory.Write(EduRig.Ram, Cpu.Pattern(16, 6));

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart, 16, EduDevice.DmaCmdStart);
            rig.WaitDma();
        });

        Runs.AssertPassed(r);
        Assert.That(rig.Dev.DmaErrors, Is.EqualTo(1));
        Assert.That(rig.Dev.LastDmaResult, Is.EqualTo(Errno.EIO.Negative()));
        Assert.That(rig.Dev.DmaBlockedByCommand, Is.EqualTo(1));
        Assert.That(rig.Dev.CopyBuffer(), Is.All.Zero);
    }

    [Test]
    public void Reset_ReturnsRegistersAndBufferToPowerOn_AndDropsPendingWork([Values] SchedulerMode mode)
    {
        // Departs from QEMU on purpose (edu.c has no reset handler): see EduDevice's header.
        var rig = new EduRig(mode);
        rig.Machine.Memory.Write(EduRig.Ram, Cpu.Pattern(64, 7));
        var after = new Dictionary<int, ulong>();

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.StartDma(EduRig.Ram, EduDevice.DmaBufferStart, 64, EduDevice.DmaCmdStart);
            rig.WaitDma();
            rig.Write32(EduDevice.RegLiveness, 0x1);
            rig.Write32(EduDevice.RegStatus, EduDevice.StatusIrqFactorial);
            rig.Write32(EduDevice.RegIrqRaise, 0x3);

            // Work in flight when the reset lands: a transfer out to RAM and a factorial.
            rig.StartDma(EduDevice.DmaBufferStart, EduRig.Ram + 0x1000, 64, EduDevice.DmaCmdStart | EduDevice.DmaCmdToRam | EduDevice.DmaCmdIrq);
            rig.Write32(EduDevice.RegFactorial, 6);
            rig.Dev.HardwareReset(PciResetKind.Flr);

            Invariant.Check(rig.Dev.Bars[0]!.RoutedAt < 0, "a reset turns decode off");
            rig.Dev.AssignBar(0, EduRig.Bar0);
            rig.Dev.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
            foreach (int reg in new[] { EduDevice.RegLiveness, EduDevice.RegFactorial, EduDevice.RegStatus, EduDevice.RegIrqStatus })
            {
                after[reg] = rig.Read32(reg);
            }

            foreach (int reg in new[] { EduDevice.RegDmaSource, EduDevice.RegDmaDestination, EduDevice.RegDmaCount, EduDevice.RegDmaCommand })
            {
                after[reg] = rig.Read64(reg);
            }

            KTask.Msleep(300); // Past both deadlines: nothing must fire.
        });

        Runs.AssertPassed(r);
        Assert.That(after.Values, Is.All.Zero);
        Assert.That(rig.Read32(EduDevice.RegIdentification), Is.EqualTo(EduDevice.Identification));
        Assert.That(rig.Dev.CopyBuffer(), Is.All.Zero);
        if (mode == SchedulerMode.Controlled)
        {
            // With real threads the work may legitimately finish before the reset lands.
            Assert.That(Cpu.ReadBytes(rig.Machine, EduRig.Ram + 0x1000, 64), Is.All.Zero, "the dropped transfer wrote nothing");
            Assert.That(rig.Dev.DmaTransfers, Is.EqualTo(1));
            Assert.That(rig.Dev.FactorialsComputed, Is.Zero);
        }

        Assert.That(rig.Dev.InterruptStatus, Is.Zero);
        Assert.That(rig.Dev.IntxAsserted, Is.False);
        Assert.That(rig.Dev.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [Test]
    public void AnExpressEdu_ResetsThroughFlr_AndThePciCoreRestoresItsBar([Values] SchedulerMode mode)
    {
        var rig = new EduRig(mode, new PciFunctionDescription { Type = "edu", Pcie = true, Resets = [PciResetMethod.Flr] });
        rig.Dev.InitResetMethods();
        int rc = -1;
        uint liveness = 0;

        RunResult r = rig.Kernel.Run("main", () =>
        {
            rig.Write32(EduDevice.RegLiveness, 0xf0f0f0f0);
            rc = rig.Dev.ResetFunction();
            liveness = rig.Read32(EduDevice.RegLiveness);
        });

        Runs.AssertPassed(r);
        Assert.That(rig.Dev.ConfigSize, Is.EqualTo(4096));
        Assert.That(rig.Dev.IsPcie, Is.True);
        Assert.That(rig.Dev.ResetMethods, Is.EqualTo(new[] { PciResetMethod.Flr }));
        Assert.That(rc, Is.Zero);
        Assert.That(liveness, Is.Zero, "the register is back at power-on, and BAR0 decodes again after the restore");
        Assert.That(rig.Dev.ResetCount(PciResetKind.Flr), Is.EqualTo(1));
    }

    [Test]
    public void TheModel_IsRegisteredAsEdu()
    {
        SimMachine m = Machines.Create();
        PciDevice d = PciDeviceModels.Create(m, new PciAddress(0, 3, 0, 0), new PciFunctionDescription { Type = "edu" });
        Assert.That(d, Is.TypeOf<EduDevice>());
        Assert.That(PciDeviceModels.Names, Does.Contain("edu").And.Contain("nic"));
    }
}
