using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Platform.Pci;

/// <summary>Tests PciDevice.Irq (INTx, MSI, MSI-X) and InterruptController.</summary>
public sealed class InterruptTests
{
    private SimMachine _m = null!;
    private GenericPciDevice _d = null!;
    private readonly List<int> _vectors = [];

    [SetUp]
    public void SetUp()
    {
        _m = PciMachines.OneDevice();
        _d = _m.Generic();
        _vectors.Clear();
    }

    private int Alloc() => _m.Interrupts.AllocVector("test", v => _vectors.Add(v));

    // ---- INTx.

    [Test]
    public void Intx_RunsTheRequestedHandler_AndSetsTheStatusBit()
    {
        int calls = 0;
        Assert.That(_m.Interrupts.RequestIntx(_d, "test", _ => calls++), Is.Zero);

        bool sent = _d.Fire(0);

        Assert.That(sent, Is.True);
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(_d.IntxAsserted, Is.True);
        Assert.That(_d.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.EqualTo(PciRegs.StatusInterrupt));

        _d.Fire(0);
        Assert.That(calls, Is.EqualTo(1), "a level already asserted is not a new interrupt");

        _d.Lower();
        Assert.That(_d.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.Zero);
        _d.Fire(0);
        Assert.That(calls, Is.EqualTo(2));
    }

    [Test]
    public void Intx_StatusBitIsReadOnlyToSoftware()
    {
        _d.Fire(0);

        _d.WriteConfig(PciRegs.Status, 0xffff, 2);

        Assert.That(_d.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.EqualTo(PciRegs.StatusInterrupt));
    }

    [Test]
    public void IntxDisable_SuppressesDelivery_AndReenablingWhileAssertedDelivers()
    {
        int calls = 0;
        _m.Interrupts.RequestIntx(_d, "test", _ => calls++);
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandIntxDisable, 2);

        _d.Fire(0);

        Assert.That(calls, Is.Zero);
        Assert.That(_d.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.EqualTo(PciRegs.StatusInterrupt), "the status bit shows the pending level");
        Assert.That(_d.IntxRaisedCount, Is.Zero);

        _d.WriteConfig(PciRegs.Command, 0, 2);
        Assert.That(calls, Is.EqualTo(1));
        Assert.That(_d.IntxRaisedCount, Is.EqualTo(1));

        _d.WriteConfig(PciRegs.Command, PciRegs.CommandIntxDisable, 2);
        _d.Lower();
        _d.WriteConfig(PciRegs.Command, 0, 2);
        Assert.That(calls, Is.EqualTo(1), "nothing to present once the line is released");
    }

    [Test]
    public void RequestIntxTwice_IsEbusy_AndKeepsTheFirstHandler()
    {
        int first = 0, second = 0;
        _m.Interrupts.RequestIntx(_d, "a", _ => first++);

        int rc = _m.Interrupts.RequestIntx(_d, "b", _ => second++);
        _d.Fire(0);

        Assert.That(rc, Is.EqualTo(Errno.EBUSY.Negative()));
        Assert.That((first, second), Is.EqualTo((1, 0)));

        _m.Interrupts.FreeIntx(_d);
        Assert.That(_m.Interrupts.RequestIntx(_d, "b", _ => second++), Is.Zero);
    }

    [Test]
    public void IntxWithoutAHandler_IsSpurious()
    {
        long before = _m.Interrupts.Spurious;

        _d.Fire(0);

        Assert.That(_m.Interrupts.Spurious, Is.EqualTo(before + 1));
        Assert.That(_m.Interrupts.Delivered, Is.Zero);
    }

    // ---- MSI.

    private void ProgramMsi(int vector, int log2Messages = 0)
    {
        (ulong addr, uint data) = InterruptController.ComposeMsiMessage(vector);
        ProgramMsiRaw(addr, data, log2Messages);
    }

    private void ProgramMsiRaw(ulong addr, uint data, int log2Messages = 0)
    {
        int cap = _d.MsiCap;
        _d.WriteConfig(cap + PciRegs.MsiAddressLo, (uint)addr, 4);
        _d.WriteConfig(cap + 8, (uint)(addr >> 32), 4);
        _d.WriteConfig(cap + 12, data, 2);
        _d.WriteConfig(cap + PciRegs.MsiFlags, (uint)(PciRegs.MsiFlagsEnable | (log2Messages << 4)), 2);
    }

    [Test]
    public void Msi_DeliversTheProgrammedVector()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsi(v);
        int intx = 0;
        _m.Interrupts.RequestIntx(_d, "intx", _ => intx++);

        bool sent = _d.Fire(0);

        Assert.That(sent, Is.True);
        Assert.That(_vectors, Is.EqualTo(new[] { v }));
        Assert.That(_m.Interrupts.Count(v), Is.EqualTo(1));
        Assert.That(_d.MessagesSent, Is.EqualTo(1));
        Assert.That(intx, Is.Zero, "with MSI enabled the function does not use INTx");
        Assert.That(_d.Fire(1), Is.False, "only one message is enabled");
        Assert.That(_vectors, Has.Count.EqualTo(1));
    }

    [Test]
    public void MsiFlags_OnlyEnableAndMultipleMessageEnableAreWritable()
    {
        int cap = _d.MsiCap;
        uint before = _d.ReadConfig(cap + PciRegs.MsiFlags, 2);

        _d.WriteConfig(cap + PciRegs.MsiFlags, 0xffff, 2);

        Assert.That(_d.ReadConfig(cap + PciRegs.MsiFlags, 2), Is.EqualTo(before | PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize));
        Assert.That(before & PciRegs.MsiFlags64Bit, Is.Not.Zero);
        Assert.That(before & PciRegs.MsiFlagsMaskBit, Is.Not.Zero);
    }

    [Test]
    public void MultipleMessageMsi_PutsTheVectorInTheLowBitsOfTheData()
    {
        int v0 = Alloc();
        int[] rest = [Alloc(), Alloc(), Alloc()];
        Assume.That(v0 % 4, Is.Zero, "the first allocated vector is aligned");
        _d.EnableMemoryAndMaster();
        ProgramMsi(v0, log2Messages: 2);

        _d.Fire(2);
        _d.Fire(3);
        _d.Fire(0);

        Assert.That(_vectors, Is.EqualTo(new[] { v0 + 2, v0 + 3, v0 }));
        Assert.That(rest, Is.EqualTo(new[] { v0 + 1, v0 + 2, v0 + 3 }));
        Assert.That(_d.Fire(4), Is.False);
    }

    [Test]
    public void AMaskedMsiVector_SetsItsPendingBit_AndUnmaskingDeliversItOnce()
    {
        int v = Alloc();
        _ = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsi(v, log2Messages: 1);
        int mask = _d.MsiCap + 16, pending = _d.MsiCap + 20;
        _d.WriteConfig(mask, 0b10, 4);

        bool sent = _d.Fire(1);

        Assert.That(sent, Is.False);
        Assert.That(_vectors, Is.Empty);
        Assert.That(_d.ReadConfig(pending, 4), Is.EqualTo(0b10u));

        _d.WriteConfig(pending, 0, 4);
        Assert.That(_d.ReadConfig(pending, 4), Is.EqualTo(0b10u), "pending bits are read-only");

        _d.Fire(0);
        Assert.That(_vectors, Is.EqualTo(new[] { v }), "vector 0 is not masked");

        _d.WriteConfig(mask, 0, 4);
        Assert.That(_vectors, Is.EqualTo(new[] { v, v + 1 }));
        Assert.That(_d.ReadConfig(pending, 4), Is.Zero);

        _d.WriteConfig(mask, 0, 4);
        Assert.That(_vectors, Has.Count.EqualTo(2), "delivered once");
    }

    [Test]
    public void Msi_WithoutBusMaster_SendsNoMessage()
    {
        int v = Alloc();
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        ProgramMsi(v);

        bool sent = _d.Fire(0);

        Assert.That(sent, Is.False);
        Assert.That(_vectors, Is.Empty);
        Assert.That(_d.MessagesSent, Is.Zero);
        Assert.That(_d.ReadConfig(_d.MsiCap + 20, 4), Is.Zero, "nothing left pending either");
    }

    [Test]
    public void AMessageOutsideTheInterruptWindow_IsAPlainDmaWrite()
    {
        const ulong target = 0x1000_0000;
        _d.EnableMemoryAndMaster();
        ProgramMsiRaw(target, 0xbeef);
        long delivered = _m.Interrupts.Delivered, spurious = _m.Interrupts.Spurious;

        bool sent = _d.Fire(0);

        Assert.That(sent, Is.True);
        Assert.That(_m.ReadMmio32((long)target), Is.EqualTo(0xbeefu));
        Assert.That(_m.Interrupts.Delivered, Is.EqualTo(delivered));
        Assert.That(_m.Interrupts.Spurious, Is.EqualTo(spurious));
    }

    [Test]
    public void AMessageOutsideTheInterruptWindow_FaultsInTheIommuWhenNothingIsMapped()
    {
        SimMachine m = PciMachines.Build(PciMachines.OneDeviceJson.Replace("\"iommu\":null,", string.Empty, StringComparison.Ordinal));
        GenericPciDevice d = m.Generic();
        const ulong target = 0x1000_0000;
        d.EnableMemoryAndMaster();
        int cap = d.MsiCap;
        d.WriteConfig(cap + PciRegs.MsiAddressLo, (uint)target, 4);
        d.WriteConfig(cap + 12, 0xbeef, 2);
        d.WriteConfig(cap + PciRegs.MsiFlags, PciRegs.MsiFlagsEnable, 2);

        d.Fire(0);

        IReadOnlyList<IommuFault> faults = m.Iommu!.Hardware.Faults.Snapshot();
        Assert.That(faults, Has.Count.EqualTo(1));
        Assert.That(faults[0].Device, Is.EqualTo(PciMachines.Bdf));
        Assert.That(faults[0].Iova, Is.EqualTo(target));
        Assert.That(faults[0].Access, Is.EqualTo(IommuAccess.Write));
        Assert.That(m.ReadMmio32((long)target), Is.Zero, "memory untouched");
    }

    // ---- MSI-X.

    private long TableEntry(int v) => _d.ResourceStart(0) + 0x10000 + (16L * v);

    private long Pba => _d.ResourceStart(0) + 0x20000;

    private void ProgramMsixEntry(int entry, int vector, bool masked)
    {
        (ulong addr, uint data) = InterruptController.ComposeMsiMessage(vector);
        long e = TableEntry(entry);
        _m.WriteMmio32(e, (uint)addr);
        _m.WriteMmio32(e + 4, (uint)(addr >> 32));
        _m.WriteMmio32(e + 8, data);
        _m.WriteMmio32(e + 12, masked ? PciRegs.MsixEntryCtrlMaskBit : 0);
    }

    private void EnableMsix(bool maskAll = false)
        => _d.WriteConfig(_d.MsixCap + PciRegs.MsixFlags, (uint)(PciRegs.MsixFlagsEnable | (maskAll ? PciRegs.MsixFlagsMaskAll : 0)), 2);

    [Test]
    public void MsixEntries_StartMasked_AndOnlyTheMaskBitOfVectorControlIsWritable()
    {
        _d.EnableMemoryAndMaster();

        Assert.That(_m.ReadMmio32(TableEntry(5) + 12), Is.EqualTo(PciRegs.MsixEntryCtrlMaskBit));
        _m.WriteMmio32(TableEntry(5) + 12, 0xfffffffe);
        Assert.That(_m.ReadMmio32(TableEntry(5) + 12), Is.Zero);
        _m.WriteMmio32(TableEntry(5) + 8, 0x1234);
        Assert.That(_m.ReadMmio32(TableEntry(5) + 8), Is.EqualTo(0x1234u));
    }

    [Test]
    public void Msix_DeliversEachEntrysVector()
    {
        int a = Alloc(), b = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsixEntry(3, a, masked: false);
        ProgramMsixEntry(6, b, masked: false);
        EnableMsix();

        _d.Fire(6);
        _d.Fire(3);

        Assert.That(_vectors, Is.EqualTo(new[] { b, a }));
        Assert.That(_d.Fire(8), Is.False, "no entry 8 in an 8-entry table");
        Assert.That(_d.Fire(0), Is.False, "entry 0 is still masked");
        Assert.That(_d.MsixPending(0), Is.True);
    }

    [Test]
    public void Msix_WinsOverMsiWhenBothAreEnabled_AndNeedsBusMaster()
    {
        int a = Alloc(), msi = Alloc();
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);
        ProgramMsixEntry(0, a, masked: false);
        EnableMsix();
        ProgramMsi(msi);

        Assert.That(_d.Fire(0), Is.False, "no bus master");
        Assert.That(_d.MsixPending(0), Is.False);

        _d.EnableMemoryAndMaster();
        _d.Fire(0);
        Assert.That(_vectors, Is.EqualTo(new[] { a }));
    }

    [Test]
    public void AMaskedMsixEntry_SetsItsPbaBit_AndUnmaskingDeliversOnce()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsixEntry(4, v, masked: true);
        EnableMsix();

        bool sent = _d.Fire(4);

        Assert.That(sent, Is.False);
        Assert.That(_vectors, Is.Empty);
        Assert.That(_m.ReadMmio32(Pba), Is.EqualTo(1u << 4));

        _m.WriteMmio32(TableEntry(4) + 12, 0);
        Assert.That(_vectors, Is.EqualTo(new[] { v }));
        Assert.That(_m.ReadMmio32(Pba), Is.Zero);

        _m.WriteMmio32(TableEntry(4) + 12, 0);
        Assert.That(_vectors, Has.Count.EqualTo(1), "delivered once");
    }

    [Test]
    public void AnMsixEntryUnmaskedWithBusMasteringOff_StaysPending_AndGoesOutWhenBusMasteringReturns()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsixEntry(2, v, masked: true);
        EnableMsix();
        _d.Fire(2);
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);

        _m.WriteMmio32(TableEntry(2) + 12, 0);
        Assert.That(_vectors, Is.Empty, "no bus master, no message");
        Assert.That(_d.MsixPending(2), Is.True);

        _d.EnableMemoryAndMaster();
        Assert.That(_vectors, Is.EqualTo(new[] { v }));
        Assert.That(_d.MsixPending(2), Is.False);
    }

    [Test]
    public void AMaskedMsiVectorUnmaskedWithBusMasteringOff_IsNotLost()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsi(v);
        int mask = _d.MsiCap + 16, pending = _d.MsiCap + 20;
        _d.WriteConfig(mask, 1, 4);
        _d.Fire(0);
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory, 2);

        _d.WriteConfig(mask, 0, 4);
        Assert.That(_vectors, Is.Empty);
        Assert.That(_d.ReadConfig(pending, 4), Is.EqualTo(1u), "still pending");

        _d.EnableMemoryAndMaster();
        Assert.That(_vectors, Is.EqualTo(new[] { v }));
        Assert.That(_d.ReadConfig(pending, 4), Is.Zero);
    }

    [Test]
    public void EnablingMsi_ReleasesAnAssertedIntxLine()
    {
        int calls = 0;
        _m.Interrupts.RequestIntx(_d, "test", _ => calls++);
        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster | PciRegs.CommandIntxDisable, 2);
        _d.Fire(0);
        Assert.That(_d.IntxAsserted, Is.True);

        ProgramMsi(Alloc());
        Assert.That(_d.IntxAsserted, Is.False);
        Assert.That(_d.ReadConfig(PciRegs.Status, 2) & PciRegs.StatusInterrupt, Is.Zero);

        _d.WriteConfig(PciRegs.Command, PciRegs.CommandMemory | PciRegs.CommandMaster, 2);
        Assert.That(calls, Is.Zero, "no INTx edge from a function that signals with MSI");
    }

    [Test]
    public void TheFunctionMask_HoldsEveryVectorPending_UntilCleared()
    {
        int a = Alloc(), b = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsixEntry(1, a, masked: false);
        ProgramMsixEntry(2, b, masked: false);
        EnableMsix(maskAll: true);

        _d.Fire(1);
        _d.Fire(2);

        Assert.That(_vectors, Is.Empty);
        Assert.That(_m.ReadMmio32(Pba), Is.EqualTo(0b110u));

        EnableMsix(maskAll: false);
        Assert.That(_vectors, Is.EquivalentTo(new[] { a, b }));
        Assert.That(_m.ReadMmio32(Pba), Is.Zero);
    }

    [Test]
    public void PbaWrites_AreIgnored()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsixEntry(7, v, masked: true);
        EnableMsix();
        _d.Fire(7);

        _m.WriteMmio32(Pba, 0);
        _m.WriteMmio32(Pba + 4, 0xffffffff);

        Assert.That(_m.ReadMmio32(Pba), Is.EqualTo(1u << 7));
        Assert.That(_m.ReadMmio32(Pba + 4), Is.Zero);
        Assert.That(_d.MsixPending(7), Is.True);
    }

    [Test]
    public void TheBarOutsideTheMsixStructures_IsStillDeviceMemory()
    {
        _d.EnableMemoryAndMaster();
        long bar0 = _d.ResourceStart(0);

        _m.WriteMmio32(bar0 + 0x30000, 0x77777777);

        Assert.That(_m.ReadMmio32(bar0 + 0x30000), Is.EqualTo(0x77777777u));
        Assert.That(_m.ReadMmio32(TableEntry(0) + 12), Is.EqualTo(PciRegs.MsixEntryCtrlMaskBit));
    }

    // ---- Vectors.

    [Test]
    public void VectorAllocation_RunsOutWithEnospc_AndAFreedVectorIsReused()
    {
        var got = new List<int>();
        int v;
        while ((v = _m.Interrupts.AllocVector("x", _ => { })) >= 0)
        {
            got.Add(v);
        }

        Assert.That(v, Is.EqualTo(Errno.ENOSPC.Negative()));
        Assert.That(got, Is.EqualTo(Enumerable.Range(InterruptController.FirstVector, InterruptController.VectorCount - InterruptController.FirstVector)));

        _m.Interrupts.FreeVector(100);
        Assert.That(_m.Interrupts.VectorName(100), Is.Null);
        Assert.That(_m.Interrupts.AllocVector("again", _ => { }), Is.EqualTo(100));
        Assert.That(_m.Interrupts.VectorName(100), Is.EqualTo("again"));
    }

    [Test]
    public void AMessageOnAFreedVector_IsSpurious()
    {
        int v = Alloc();
        _d.EnableMemoryAndMaster();
        ProgramMsi(v);
        _m.Interrupts.FreeVector(v);

        _d.Fire(0);

        Assert.That(_vectors, Is.Empty);
        Assert.That(_m.Interrupts.Spurious, Is.EqualTo(1));
        Assert.That(_m.Interrupts.Count(v), Is.Zero);
    }
}
