// Tests Vfio.Pci/VfioPciCoreDevice.Intrs.cs end to end: INTx, MSI and MSI-X through
// SET_IRQS on edu (INTx, one MSI vector) and the NIC (five MSI-X vectors), delivery from the
// device through the interrupt controller to an eventfd the user reads and polls, the
// ported peer cases IR-01…IR-23 and BI-05/BI-07 for the IRQ ioctls, the per-profile
// differences (VfioPciFeatures), and that every rejected call changes nothing: eventfd
// references, vectors allocated in the interrupt controller, the INTx handler, the
// function's MSI/MSI-X enable bits. Expected values follow the real 6.1.192 and 6.12.118
// where they were probed (edu and e1000e behind vfio-pci).

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Fs;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciIntrsTests
{
    private const VfioIrqSetFlags NoneTrigger = VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionTrigger;
    private const VfioIrqSetFlags EventfdTrigger = VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionTrigger;
    private const VfioIrqSetFlags NoneUnmask = VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionUnmask;
    private const VfioIrqSetFlags NoneMask = VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask;

    private static readonly KernelProfile[] s_profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    /// <summary>Boots with <paramref name="profile"/>, opens <paramref name="bdf"/> and runs <paramref name="body"/> with the device fd; closes everything after.</summary>
    private static void WithOpen(string bdf, Action<VfioPciRig, int> body, KernelProfile? profile = null, VfioPciOptions? options = null, SchedulerMode mode = SchedulerMode.Controlled)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(mode).UseProfile(profile ?? KernelProfile.Linux6_12).AddVfioPci(options).Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(bdf);
            body(rig, d);
            rig.CloseAll((c, g, d));
        }));
    }

    private static long SetFds(VfioPciRig rig, int d, uint index, uint start, params int[] fds)
    {
        byte[] data = new byte[4 * fds.Length];
        for (int i = 0; i < fds.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(4 * i), fds[i]);
        }

        return rig.SetIrqs(d, (uint)(20 + data.Length), EventfdTrigger, index, start, (uint)fds.Length, data);
    }

    private static long Loopback(VfioPciRig rig, int d, uint index, uint start, uint count)
        => rig.SetIrqs(d, 20, NoneTrigger, index, start, count);

    private static long Disable(VfioPciRig rig, int d, uint index) => rig.SetIrqs(d, 20, NoneTrigger, index, 0, 0);

    /// <summary>A non-blocking read of the eventfd: its count, or 0 when it would block (EAGAIN).</summary>
    private static ulong Take(VfioPciRig rig, int efd)
    {
        byte[] b = new byte[8];
        long n = rig.P.Read(efd, b);
        if (n == Errno.EAGAIN.Negative())
        {
            return 0;
        }

        Assert.That(n, Is.EqualTo(8), ErrorReason.Current);
        return BitConverter.ToUInt64(b);
    }

    private static int Efd(VfioPciRig rig, uint initval = 0) => rig.P.Eventfd(initval, EventFdContext.EFD_NONBLOCK);

    private static void WriteCommand(VfioPciRig rig, int d, ushort value)
        => Assert.That(rig.P.Pwrite(d, BitConverter.GetBytes(value), VfioPciIndex.IndexToOffset(VfioPciIndex.Config) + PciRegs.Command), Is.EqualTo(2));

    private static ushort ReadCommand(VfioPciRig rig, int d) => (ushort)rig.Read32(d, VfioPciIndex.Config, PciRegs.Command);

    /// <summary>What a rejected call must leave alone.</summary>
    private static (int Index, int Vectors, int Allocated, bool Intx, bool Msi, bool Msix) State(VfioPciRig rig, string bdf)
    {
        PciDevice dev = rig.Dev(bdf);
        VfioPciCoreDevice v = rig.Vdev(bdf);
        return (v.ActiveIrqIndex, v.MsiVectorsAllocated, rig.M.Interrupts.AllocatedVectors, rig.M.Interrupts.HasIntxHandler(dev), dev.MsiEnabled, dev.MsixEnabled);
    }

    private static void EduRaise(VfioPciRig rig, int d) => Assert.That(rig.Write32(d, 0, EduDevice.RegIrqRaise, 1), Is.EqualTo(4));

    private static void EduAck(VfioPciRig rig, int d) => Assert.That(rig.Write32(d, 0, EduDevice.RegIrqAck, 0xffffffff), Is.EqualTo(4));

    // ---- GET_IRQ_INFO (IR-01, IR-02, BI-05, BI-07).

    [Test]
    public void IR_01_GetIrqInfo_ReportsEveryIndex_AsTheRealKernelsDo([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        bool dyn = profile.Has(VfioPciFeatures.DynamicMsix);
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            (uint, VfioIrqInfoFlags) Info(uint i)
            {
                Assert.That(rig.IrqInfo(d, i, out VfioIrqInfo info), Is.Zero, ErrorReason.Current);
                return (info.Count, info.Flags);
            }

            const VfioIrqInfoFlags ev = VfioIrqInfoFlags.Eventfd;
            Assert.That(Info(0), Is.EqualTo((1u, ev | VfioIrqInfoFlags.Maskable | VfioIrqInfoFlags.Automasked)));
            Assert.That(Info(1), Is.EqualTo((1u, ev | VfioIrqInfoFlags.NoResize)));
            Assert.That(Info(2), Is.EqualTo((0u, ev | VfioIrqInfoFlags.NoResize)), "no MSI-X: NORESIZE whatever the profile");
            Assert.That(rig.IrqInfo(d, 3, out _), Is.EqualTo(Errno.EINVAL.Negative()), "edu is not PCI Express");
            Assert.That(Info(4), Is.EqualTo((1u, ev | VfioIrqInfoFlags.NoResize)));
        }, profile);

        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            Assert.That(rig.IrqInfo(d, 2, out VfioIrqInfo msix), Is.Zero);
            Assert.That((msix.Count, msix.Flags), Is.EqualTo(((uint)NicDevice.Vectors, VfioIrqInfoFlags.Eventfd | (dyn ? 0 : VfioIrqInfoFlags.NoResize))));
            Assert.That(rig.IrqInfo(d, 3, out VfioIrqInfo err), Is.Zero);
            Assert.That((err.Count, err.Flags), Is.EqualTo((1u, VfioIrqInfoFlags.Eventfd | VfioIrqInfoFlags.NoResize)));
        }, profile);
    }

    [Test]
    public void IR_02_BI_05_BI_07_GetIrqInfo_RefusesBadIndexesAndShortArgsz()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            for (uint i = 0; i < 16; i++)
            {
                Assert.That(rig.IrqInfo(d, i, out _), Is.EqualTo(i < 5 ? 0 : Errno.EINVAL.Negative()), $"index {i}");
            }

            Assert.That(rig.IrqInfo(d, 0xffffffff, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            var shortInfo = new VfioIrqInfo { Argsz = 15, Index = 0 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetIrqInfo, ref shortInfo), Is.EqualTo(Errno.EINVAL.Negative()), "argsz minsz-1");
            var big = new VfioIrqInfo { Argsz = 32, Index = 0 };
            Assert.That(rig.Ioctl(d, VfioIoctl.DeviceGetIrqInfo, ref big), Is.Zero, "a larger argsz is fine");
            Assert.That(rig.SetIrqs(d, 19, NoneTrigger, VfioPciIndex.IrqMsix, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "SET_IRQS argsz minsz-1");
            Assert.That(State(rig, VfioPciRig.Nic).Index, Is.EqualTo(-1));
        });
    }

    // ---- MSI / MSI-X (IR-04, IR-05, IR-07, IR-14, IR-20, IR-22).

    [Test]
    public void IR_04_MsixEnableTriggerDisable_SignalsEachVectorAlone_AndGivesEverythingBack([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int before = rig.M.Interrupts.AllocatedVectors;
            int[] fds = [.. Enumerable.Range(0, NicDevice.Vectors).Select(_ => Efd(rig))];
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, fds), Is.Zero, ErrorReason.Current);
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo((VfioPciIndex.IrqMsix, NicDevice.Vectors, before + NicDevice.Vectors, false, false, true)));
            for (int i = 0; i < fds.Length; i++)
            {
                Assert.That(Take(rig, fds[i]), Is.Zero, "nothing before the trigger");
                Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, (uint)i, 1), Is.Zero);
                for (int j = 0; j < fds.Length; j++)
                {
                    Assert.That(Take(rig, fds[j]), Is.EqualTo(i == j ? 1UL : 0UL), $"vector {j} after triggering {i}");
                }

                Assert.That(rig.EventFdRefs(fds[i]), Is.EqualTo(2), "vfio holds each eventfd once");
            }

            Assert.That(Disable(rig, d, VfioPciIndex.IrqMsix), Is.Zero);
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo((-1, 0, before, false, false, false)));
            Assert.That(fds.Select(f => rig.EventFdRefs(f)), Is.All.EqualTo(1));
            Assert.That(Disable(rig, d, VfioPciIndex.IrqMsix), Is.EqualTo(Errno.EINVAL.Negative()), "disable when nothing is enabled");
        }, profile);
    }

    [Test]
    public void IR_05_LoopbackOfVector1_AddsOneToItsCounterOnly()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e0 = Efd(rig, 4);
            int e1 = Efd(rig, 8);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1), Is.Zero);
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, 1, 1), Is.Zero);
            Assert.That((Take(rig, e0), Take(rig, e1)), Is.EqualTo((4UL, 9UL)));
        });
    }

    [Test]
    public void IR_07_IR_20_EduRaisesMsi_TheEventfdReadsOneAndPolls_AndDisableReturnsToNone([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig);
            int before = rig.M.Interrupts.AllocatedVectors;
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 0, e), Is.Zero, ErrorReason.Current);
            Assert.That(State(rig, VfioPciRig.Edu), Is.EqualTo((VfioPciIndex.IrqMsi, 1, before + 1, false, true, false)));
            int msi = rig.Dev(VfioPciRig.Edu).MsiCap;
            Assert.That(rig.Read32(d, VfioPciIndex.Config, msi) >> 16, Is.EqualTo(0x80u), "the user's view of the flags: 64-bit, not enabled by the user, QMASK 0");

            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.Zero, "no bus mastering, no message (as on the real edu)");
            EduAck(rig, d);
            WriteCommand(rig, d, PciRegs.CommandMemory | PciRegs.CommandMaster);
            EduRaise(rig, d);
            Span<PollFd> pfd = [new PollFd(e, PollEvents.POLLIN)];
            Assert.That(rig.P.Poll(pfd, 0), Is.EqualTo(1));
            Assert.That(pfd[0].REvents & PollEvents.POLLIN, Is.EqualTo(PollEvents.POLLIN));
            Assert.That(Take(rig, e), Is.EqualTo(1UL));

            // The factorial's completion interrupt (status 0x80) and the DMA's (command 0x4).
            EduAck(rig, d);
            Assert.That(rig.Write32(d, 0, EduDevice.RegStatus, EduDevice.StatusIrqFactorial), Is.EqualTo(4));
            Assert.That(rig.Write32(d, 0, EduDevice.RegFactorial, 5), Is.EqualTo(4));
            byte[] buf = new byte[8];
            Assert.That(rig.P.Read(e, buf), Is.EqualTo(Errno.EAGAIN.Negative()), "not before the factorial finishes");
            KTask.Msleep(5);
            Assert.That(Take(rig, e), Is.EqualTo(1UL), "factorial done");
            Assert.That(rig.Read32(d, 0, EduDevice.RegFactorial), Is.EqualTo(120u));

            Assert.That(Disable(rig, d, VfioPciIndex.IrqMsi), Is.Zero);
            Assert.That(State(rig, VfioPciRig.Edu), Is.EqualTo((-1, 0, before, false, false, false)));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(1));
        }, profile);
    }

    [Test]
    public void IR_14_ABadFdInTheBlock_FailsEbadf_AndUnassignsWhatTheCallSet([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int before = rig.M.Interrupts.AllocatedVectors;
            int e0 = Efd(rig), e1 = Efd(rig), e2 = Efd(rig);

            // From idle: the failure disables MSI-X again.
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1, 999), Is.EqualTo(Errno.EBADF.Negative()));
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo((-1, 0, before, false, false, false)));
            Assert.That(new[] { e0, e1, e2 }.Select(f => rig.EventFdRefs(f)), Is.All.EqualTo(1));

            // While enabled: vectors 0 and 1 lose their eventfds (0 by the unwind, 1 before its bad fd was looked up), 2 keeps its own.
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1, e2), Is.Zero);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, 999), Is.EqualTo(Errno.EBADF.Negative()));
            Assert.That((rig.EventFdRefs(e0), rig.EventFdRefs(e1), rig.EventFdRefs(e2)), Is.EqualTo((1, 1, 2)));
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, 0, 3), Is.Zero);
            Assert.That((Take(rig, e0), Take(rig, e1), Take(rig, e2)), Is.EqualTo((0UL, 0UL, 1UL)));
            Assert.That(State(rig, VfioPciRig.Nic).Index, Is.EqualTo(VfioPciIndex.IrqMsix), "the index stays enabled");

            // fd -1 unassigns that vector only; the vector stays allocated.
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, -1, e2), Is.Zero);
            Assert.That(rig.Vdev(VfioPciRig.Nic).MsiVectorsAllocated, Is.EqualTo(3));
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, 0, 3), Is.Zero);
            Assert.That((Take(rig, e0), Take(rig, e1), Take(rig, e2)), Is.EqualTo((1UL, 0UL, 1UL)));
        }, profile);
    }

    [Test]
    public void IR_22_MsixVectorsStopAtTheTable_TheLastOneWorks()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, NicDevice.Vectors, e), Is.EqualTo(Errno.EINVAL.Negative()), "vector 5 of 5");
            Assert.That(State(rig, VfioPciRig.Nic).Index, Is.EqualTo(-1));
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, NicDevice.Vectors - 1, e), Is.Zero, "vector 4 enables 5 vectors");
            Assert.That(rig.Vdev(VfioPciRig.Nic).MsiVectorsAllocated, Is.EqualTo(NicDevice.Vectors));
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, NicDevice.Vectors - 1, 1), Is.Zero);
            Assert.That(Take(rig, e), Is.EqualTo(1UL));
        });
    }

    [Test]
    public void NicMsix_DeviceCausesSignalTheirVectors()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int[] fds = [.. Enumerable.Range(0, NicDevice.Vectors).Select(_ => Efd(rig))];
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, fds), Is.Zero);
            WriteCommand(rig, d, PciRegs.CommandMemory | PciRegs.CommandMaster);
            Assert.That(rig.Write32(d, 0, NicDevice.RegIms, NicDevice.CauseAll), Is.EqualTo(4));
            Assert.That(rig.Write32(d, 0, NicDevice.RegIcs, NicDevice.CauseSoftware | NicDevice.CauseLink), Is.EqualTo(4));
            Assert.That(fds.Select(f => Take(rig, f)), Is.EqualTo(new ulong[] { 0, 0, 1, 0, 1 }));
        });
    }

    [Test]
    public void FewerVectorsThanAsked_ReturnsTheNumberAvailable_AndChangesNothing([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            InterruptController ic = rig.M.Interrupts;
            var hogs = new List<int>();
            while (ic.FreeVectors > 2)
            {
                hogs.Add(ic.AllocVector("hog", _ => { }));
            }

            int allocated = ic.AllocatedVectors;
            int[] fds = [.. Enumerable.Range(0, NicDevice.Vectors).Select(_ => Efd(rig))];
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, fds), Is.EqualTo(2), "the kernel's positive return: 2 vectors available");
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo((-1, 0, allocated, false, false, false)));
            Assert.That(fds.Select(f => rig.EventFdRefs(f)), Is.All.EqualTo(1));
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, fds[0], fds[1]), Is.Zero, "two fit");
            Assert.That(Disable(rig, d, VfioPciIndex.IrqMsix), Is.Zero);
            foreach (int v in hogs)
            {
                ic.FreeVector(v);
            }
        }, profile);
    }

    [Test]
    public void GrowingMsixWhileEnabled_WorksOn612_AndIsEinvalOn61([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        bool dyn = profile.Has(VfioPciFeatures.DynamicMsix);
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e0 = Efd(rig), e1 = Efd(rig), e3 = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1), Is.Zero);
            int allocated = rig.M.Interrupts.AllocatedVectors;
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 2, -1, e3), Is.EqualTo(dyn ? 0 : Errno.EINVAL.Negative()), ErrorReason.Current);
            Assert.That(rig.Vdev(VfioPciRig.Nic).MsiVectorsAllocated, Is.EqualTo(dyn ? 3 : 2), "fd -1 allocates nothing; vector 3 is allocated on demand");
            Assert.That(rig.M.Interrupts.AllocatedVectors, Is.EqualTo(allocated + (dyn ? 1 : 0)));
            Assert.That(rig.EventFdRefs(e3), Is.EqualTo(dyn ? 2 : 1));
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, 0, 5), Is.EqualTo(dyn ? 0 : Errno.EINVAL.Negative()), "a loopback past the vectors");
            Assert.That((Take(rig, e0), Take(rig, e1), Take(rig, e3)), Is.EqualTo(dyn ? (1UL, 1UL, 1UL) : (0UL, 0UL, 0UL)));
        }, profile);
    }

    [Test]
    public void MsiAndMsix_HaveNoMaskOrUnmask_AndRejectTwoActions()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e), Is.Zero);
            var before = State(rig, VfioPciRig.Nic);
            Assert.That(rig.SetIrqs(d, 20, NoneMask, VfioPciIndex.IrqMsix, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()));
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqMsix, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()));
            Assert.That(rig.SetIrqs(d, 20, NoneMask, VfioPciIndex.IrqMsi, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()));

            // IR-17: MASK and UNMASK together (vfio-user says EINVAL); the kernel's shared checks do not look at
            // the action bits, and vfio-pci finds no handler for the pair: ENOTTY.
            Assert.That(rig.SetIrqs(d, 20, VfioIrqSetFlags.DataNone | VfioIrqSetFlags.ActionMask | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqMsix, 0, 1), Is.EqualTo(Errno.ENOTTY.Negative()), "IR-17");
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo(before));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(2));
        });
    }

    [Test]
    public void IR_16_IR_19_BoolPayloads_LongerIsAccepted_ShorterIsEinval_AndNoneIgnoresAnFdPayload()
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e0 = Efd(rig), e1 = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1), Is.Zero);
            const VfioIrqSetFlags boolTrigger = VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger;
            Assert.That(rig.SetIrqs(d, 23, boolTrigger, VfioPciIndex.IrqMsix, 0, 2, [1, 0, 1]), Is.Zero, "IR-16: a longer payload is accepted");
            Assert.That((Take(rig, e0), Take(rig, e1)), Is.EqualTo((1UL, 0UL)));
            Assert.That(rig.SetIrqs(d, 21, boolTrigger, VfioPciIndex.IrqMsix, 0, 2, [1]), Is.EqualTo(Errno.EINVAL.Negative()), "IR-16: a short payload");
            Assert.That(rig.SetIrqs(d, 24, EventfdTrigger, VfioPciIndex.IrqMsix, 0, 2, BitConverter.GetBytes(e0)), Is.EqualTo(Errno.EINVAL.Negative()), "IR-19: two eventfds, one given");
            Assert.That(rig.SetIrqs(d, 24, NoneTrigger, VfioPciIndex.IrqMsix, 1, 1, BitConverter.GetBytes(e0)), Is.Zero, "IR-19: DATA_NONE reads no payload");
            Assert.That((Take(rig, e0), Take(rig, e1)), Is.EqualTo((0UL, 1UL)));
            Assert.That((rig.EventFdRefs(e0), rig.EventFdRefs(e1)), Is.EqualTo((2, 2)));
        });
    }

    [Test]
    public void IR_08_OnlyOneIndexAtATime_AndTheRefusalChangesNothing([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero, ErrorReason.Current);
            var intx = State(rig, VfioPciRig.Nic);
            Assert.That(intx.Intx, Is.True);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo(intx));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(2));
            Assert.That(Disable(rig, d, VfioPciIndex.IrqIntx), Is.Zero);

            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e), Is.Zero);
            var msix = State(rig, VfioPciRig.Nic);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 0, e), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(State(rig, VfioPciRig.Nic), Is.EqualTo(msix));
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(2));
        }, profile);
    }

    // ---- INTx (IR-10, IR-11, LR-10).

    [Test]
    public void Intx_AnInterruptMasksAndSignals_UnmaskWhileAsserted_SignalsAgain_AckAndUnmaskClears([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice v = rig.Vdev(VfioPciRig.Edu);
            PciDevice dev = rig.Dev(VfioPciRig.Edu);
            int e = Efd(rig);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero, ErrorReason.Current);
            Assert.That(rig.M.Interrupts.HasIntxHandler(dev), Is.True);
            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.EqualTo(1UL));
            Assert.That(v.IntxMasked, Is.True, "auto-masked");
            Assert.That(ReadCommand(rig, d) & PciRegs.CommandIntxDisable, Is.Zero, "the user never sees the host's DisINTx");
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            Assert.That((Take(rig, e), v.IntxMasked), Is.EqualTo((1UL, true)), "still asserted: masked, signalled again");
            EduAck(rig, d);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            Assert.That((Take(rig, e), v.IntxMasked), Is.EqualTo((0UL, false)));

            // MASK holds an interrupt back until UNMASK.
            Assert.That(rig.SetIrqs(d, 20, NoneMask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            Assert.That(Take(rig, e), Is.EqualTo(1UL));
            EduAck(rig, d);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);

            Assert.That(Disable(rig, d, VfioPciIndex.IrqIntx), Is.Zero);
            Assert.That((rig.M.Interrupts.HasIntxHandler(dev), v.ActiveIrqIndex, rig.EventFdRefs(e)), Is.EqualTo((false, -1, 1)));
        }, profile);
    }

    [Test]
    public void IR_10_IntxMaskAndUnmask_NeedIntxStart0Count1_MaskEventfdIsEnotty_TheUnmaskEventfdUnmasks([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice v = rig.Vdev(VfioPciRig.Edu);
            int e = Efd(rig), u = Efd(rig);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "INTx off");
            Assert.That(rig.SetIrqs(d, 20, NoneMask, VfioPciIndex.IrqIntx, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "INTx off");
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 0), Is.EqualTo(Errno.EINVAL.Negative()), "count 0");
            Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionMask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(u)), Is.EqualTo(Errno.ENOTTY.Negative()));
            Assert.That(rig.EventFdRefs(u), Is.EqualTo(1));

            Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(u)), Is.Zero);
            Assert.That((v.IntxUnmaskEventfdActive, rig.EventFdRefs(u)), Is.EqualTo((true, 2)));
            Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(u)), Is.EqualTo(Errno.EBUSY.Negative()), "one unmask eventfd at a time");
            Assert.That(rig.EventFdRefs(u), Is.EqualTo(2));

            // The resampler's write unmasks; the count is consumed by the kernel.
            EduRaise(rig, d);
            Assert.That((Take(rig, e), v.IntxMasked), Is.EqualTo((1UL, true)));
            EduAck(rig, d);
            Assert.That(rig.P.Write(u, BitConverter.GetBytes(1UL)), Is.EqualTo(8));
            Assert.That((v.IntxMasked, rig.EventFdCount(u)), Is.EqualTo((false, 0UL)));

            // Written while still asserted: stays masked and the trigger fires again (from the inject work).
            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.EqualTo(1UL));
            Assert.That(rig.P.Write(u, BitConverter.GetBytes(1UL)), Is.EqualTo(8));
            KTask.Msleep(1);
            Assert.That((Take(rig, e), v.IntxMasked), Is.EqualTo((1UL, true)));
            EduAck(rig, d);

            Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(-1)), Is.Zero);
            Assert.That((v.IntxUnmaskEventfdActive, rig.EventFdRefs(u)), Is.EqualTo((false, 1)));
            Assert.That(rig.P.Write(u, BitConverter.GetBytes(1UL)), Is.EqualTo(8));
            Assert.That(v.IntxMasked, Is.True, "an unregistered unmask eventfd does nothing");
        }, profile);
    }

    [Test]
    public void IR_11_IntxTrigger_TakesStart0Count1_LoopsBack_AndCount0Disables([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            int e = Efd(rig), e2 = Efd(rig);
            Assert.That(rig.SetIrqs(d, 24, EventfdTrigger, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(e)), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneTrigger, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            Assert.That(Take(rig, e), Is.EqualTo(1UL), "DATA_NONE loopback");
            Assert.That(rig.SetIrqs(d, 21, VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqIntx, 0, 1, [0]), Is.Zero);
            Assert.That(Take(rig, e), Is.Zero, "BOOL(0) does nothing");
            Assert.That(rig.SetIrqs(d, 21, VfioIrqSetFlags.DataBool | VfioIrqSetFlags.ActionTrigger, VfioPciIndex.IrqIntx, 0, 1, [1]), Is.Zero);
            Assert.That(Take(rig, e), Is.EqualTo(1UL), "BOOL(1) loopback");

            // Replacing the trigger moves vfio's reference.
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e2), Is.Zero);
            Assert.That((rig.EventFdRefs(e), rig.EventFdRefs(e2)), Is.EqualTo((1, 2)));
            EduRaise(rig, d);
            Assert.That((Take(rig, e), Take(rig, e2)), Is.EqualTo((0UL, 1UL)));
            EduAck(rig, d);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);

            // A bad fd while enabled: linux-6.12 looks it up first and changes nothing.
            long bad = rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, 999);
            Assert.That(bad, Is.EqualTo(Errno.EBADF.Negative()));
            if (profile.Has(VfioPciFeatures.PersistentIntxHandler))
            {
                Assert.That(rig.EventFdRefs(e2), Is.EqualTo(2), "linux-6.12 keeps the old trigger");
            }
            else
            {
                Assert.That(rig.EventFdRefs(e2), Is.EqualTo(1), "linux-6.1 dropped the old trigger before looking the new one up");
            }

            Assert.That(rig.SetIrqs(d, 20, NoneTrigger, VfioPciIndex.IrqIntx, 1, 1), Is.EqualTo(Errno.EINVAL.Negative()), "start 1");
            Assert.That(rig.SetIrqs(d, 28, EventfdTrigger, VfioPciIndex.IrqIntx, 0, 2, new byte[8]), Is.EqualTo(Errno.EINVAL.Negative()), "count 2 (past INTx's one)");
            Assert.That(Disable(rig, d, VfioPciIndex.IrqIntx), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneTrigger, VfioPciIndex.IrqIntx, 0, 1), Is.EqualTo(Errno.EINVAL.Negative()), "loopback with INTx off");

            // fd -1 from idle enables INTx without a trigger (as the real kernels do).
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, -1), Is.Zero);
            Assert.That(rig.Vdev(VfioPciRig.Edu).ActiveIrqIndex, Is.EqualTo(VfioPciIndex.IrqIntx));
            Assert.That(Disable(rig, d, VfioPciIndex.IrqIntx), Is.Zero);
        }, profile);
    }

    [Test]
    public void IntxLoopbackWithoutATrigger_IsHarmlessOn612()
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, -1), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneTrigger, VfioPciIndex.IrqIntx, 0, 1), Is.Zero, "CVE-2024-26812: no NULL eventfd is signalled");
        });
    }

    [Test]
    public void IntxLoopbackWithoutATrigger_IsANullDereferenceOn61()
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseProfile(KernelProfile.Linux6_1).AddVfioPci().Build());
        RunResult r = rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, -1), Is.Zero);
            rig.SetIrqs(d, 20, NoneTrigger, VfioPciIndex.IrqIntx, 0, 1);
        });
        Assert.That(r.Outcome, Is.EqualTo(RunOutcome.Panic), r.Describe());
        Assert.That(r.Describe(), Does.Contain("NULL pointer dereference"));
    }

    [Test]
    public void TheVirtualIntxDisableBit_MasksAndUnmasks_AndAPendingInterruptArrivesWhenCleared([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice v = rig.Vdev(VfioPciRig.Edu);
            int e = Efd(rig);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero);
            ushort cmd = ReadCommand(rig, d);
            WriteCommand(rig, d, (ushort)(cmd | PciRegs.CommandIntxDisable));
            Assert.That((v.VirqDisabled, v.IntxMasked), Is.EqualTo((true, true)));
            Assert.That(ReadCommand(rig, d) & PciRegs.CommandIntxDisable, Is.EqualTo(PciRegs.CommandIntxDisable), "the user reads its own bit back");
            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.Zero);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            Assert.That((Take(rig, e), v.IntxMasked), Is.EqualTo((0UL, true)), "UNMASK does not override virq_disabled");
            WriteCommand(rig, d, cmd);
            Assert.That((Take(rig, e), v.VirqDisabled), Is.EqualTo((1UL, false)), "the pending interrupt arrives when the bit clears");
            EduAck(rig, d);
        }, profile);
    }

    [Test]
    public void LR_10_TheUsersIntxDisable_SurvivesAModeChange([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice v = rig.Vdev(VfioPciRig.Edu);
            int e = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 0, e), Is.Zero);
            ushort cmd = ReadCommand(rig, d);
            WriteCommand(rig, d, (ushort)(cmd | PciRegs.CommandIntxDisable));
            Assert.That(Disable(rig, d, VfioPciIndex.IrqMsi), Is.Zero);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero);
            Assert.That((v.VirqDisabled, v.IntxMasked), Is.EqualTo((true, true)), "INTx comes up masked");
            EduRaise(rig, d);
            Assert.That(Take(rig, e), Is.Zero);
            WriteCommand(rig, d, cmd);
            Assert.That(Take(rig, e), Is.EqualTo(1UL), "and can be cleared again");
            EduAck(rig, d);
        }, profile);
    }

    [Test]
    public void ExclusiveIntx_WithoutDisIntxMasking_MasksTheLineAtTheController([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Edu, (rig, d) =>
        {
            VfioPciCoreDevice v = rig.Vdev(VfioPciRig.Edu);
            PciDevice dev = rig.Dev(VfioPciRig.Edu);
            Assert.That(v.Pci23, Is.False, "nointxmask");
            int e = Efd(rig);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero);
            Assert.That(rig.M.Interrupts.IntxDisableDepth(dev), Is.Zero);
            EduRaise(rig, d);
            Assert.That((Take(rig, e), rig.M.Interrupts.IntxDisableDepth(dev)), Is.EqualTo((1UL, 1)), "disable_irq on the line");
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            KTask.Msleep(1);
            Assert.That((Take(rig, e), rig.M.Interrupts.IntxDisableDepth(dev)), Is.EqualTo((1UL, 1)), "enable_irq replays the still-asserted line: masked and signalled again");
            EduAck(rig, d);
            Assert.That(rig.SetIrqs(d, 20, NoneUnmask, VfioPciIndex.IrqIntx, 0, 1), Is.Zero);
            KTask.Msleep(1);
            Assert.That((Take(rig, e), rig.M.Interrupts.IntxDisableDepth(dev)), Is.EqualTo((0UL, 0)));
        }, profile, new VfioPciOptions { NoIntxMask = true });
    }

    // ---- ERR and REQ (IR-13, fidelity: negative fds).

    [Test]
    public void IR_13_Req_DisableThenReenable_AndNegativeFds_PerProfile([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithOpen(VfioPciRig.Nic, (rig, d) =>
        {
            int e = Efd(rig);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, e), Is.Zero);
            Assert.That(Disable(rig, d, VfioPciIndex.IrqReq), Is.Zero);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqReq, e), Is.Zero, "re-enable after disable");
            long expected = profile.Has(VfioPciFeatures.ErrReqNegativeFdIsEinval) ? Errno.EINVAL.Negative() : 0;
            foreach (uint index in new uint[] { VfioPciIndex.IrqErr, VfioPciIndex.IrqReq })
            {
                Assert.That(rig.SetIrqEventfd(d, index, -2), Is.EqualTo(expected), $"index {index}, fd -2");
                Assert.That(rig.SetIrqEventfd(d, index, -7), Is.EqualTo(expected), $"index {index}, fd -7");
            }

            Assert.That(rig.Vdev(VfioPciRig.Nic).ReqTrigger, Is.Not.Null, "a rejected or ignored fd leaves the eventfd registered");
            Assert.That(rig.EventFdRefs(e), Is.EqualTo(2));
        }, profile);
    }

    // ---- Teardown.

    [Test]
    public void ClosingTheDevice_DisablesTheActiveIndex_AndGivesBackVectorsAndEventfds([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseProfile(profile).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Nic);
            int before = rig.M.Interrupts.AllocatedVectors;
            int e0 = Efd(rig), e1 = Efd(rig), u = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsix, 0, e0, e1), Is.Zero);
            Assert.That(rig.Vdev(VfioPciRig.Nic).ResetWorks, Is.True);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceReset, 0), Is.Zero, ErrorReason.Current);
            Assert.That(State(rig, VfioPciRig.Nic).Msix, Is.True, "VFIO_DEVICE_RESET leaves the interrupts as they were (the reset restores the state)");
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsix, 0, 2), Is.Zero);
            Assert.That((Take(rig, e0), Take(rig, e1)), Is.EqualTo((1UL, 1UL)));
            rig.CloseAll((c, g, d));
            Assert.That((rig.M.Interrupts.AllocatedVectors, rig.EventFdRefs(e0), rig.EventFdRefs(e1)), Is.EqualTo((before, 1, 1)));
            Assert.That(rig.Dev(VfioPciRig.Nic).MsixEnabled, Is.False);

            // INTx with an unmask eventfd: the close frees the handler and both eventfds.
            (c, g, d) = rig.Open(VfioPciRig.Nic);
            Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e0), Is.Zero);
            Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(u)), Is.Zero);
            rig.CloseAll((c, g, d));
            Assert.That((rig.M.Interrupts.HasIntxHandler(rig.Dev(VfioPciRig.Nic)), rig.EventFdRefs(e0), rig.EventFdRefs(u)), Is.EqualTo((false, 1, 1)));
            Assert.That(rig.Vdev(VfioPciRig.Nic).ActiveIrqIndex, Is.EqualTo(-1));
            Assert.That(rig.Sim.Unbind(VfioPciRig.Nic), Is.EqualTo(VfioPciDriver.DriverName));
        }));
    }

    // ---- IR-23: AW's intx-race, both schedulers.

    private static readonly ulong[] s_seeds = [1, 2, 3, 5, 8];

    [Test]
    public void IR_23_IntxEnableUnmaskDisableLoops_RacingReadersAndUnmaskWriters_KeepTheDeviceUsable(
        [Values] SchedulerMode mode, [ValueSource(nameof(s_seeds))] ulong seed)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(mode, seed).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            Assert.That(rig.P.Close(g), Is.Zero, "LR-01: the device fd keeps the group and container");
            Assert.That(rig.P.Close(c), Is.Zero);
            int e = Efd(rig), u = Efd(rig);
            bool done = false;
            KTask reader = rig.P.SpawnThread("reader", () =>
            {
                while (!Volatile.Read(ref done))
                {
                    Take(rig, e);
                    KTask.Msleep(1);
                }
            });
            KTask unmasker = rig.P.SpawnThread("unmasker", () =>
            {
                while (!Volatile.Read(ref done))
                {
                    rig.P.Write(u, BitConverter.GetBytes(1UL));
                    EduRaise(rig, d);
                    KTask.Msleep(1);
                }
            });
            for (int i = 0; i < 10; i++)
            {
                Assert.That(rig.SetIrqEventfd(d, VfioPciIndex.IrqIntx, e), Is.Zero, ErrorReason.Current);
                Assert.That(rig.SetIrqs(d, 24, VfioIrqSetFlags.DataEventfd | VfioIrqSetFlags.ActionUnmask, VfioPciIndex.IrqIntx, 0, 1, BitConverter.GetBytes(u)), Is.Zero, ErrorReason.Current);
                KTask.Msleep(1);
                Assert.That(Disable(rig, d, VfioPciIndex.IrqIntx), Is.Zero);
            }

            Volatile.Write(ref done, true);
            reader.Join();
            unmasker.Join();
            Assert.That((rig.EventFdRefs(e), rig.EventFdRefs(u)), Is.EqualTo((1, 1)));
            Assert.That(rig.IrqInfo(d, 0, out _), Is.Zero, "still usable");
            Assert.That(rig.P.Close(d), Is.Zero);
        }));
    }

    // ---- MSI with a block larger than the vectors asked for.

    private const string FourMsiJson = """
        {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[{"slot":1,"type":"root-port","acs":true,"children":[
          {"slot":0,"type":"generic","vendor":"0x1b36","device":"0x0001","class":"0xff0000","bars":[{"index":0,"size":"4K"}],"msi":4}]}]}
        """;

    [Test]
    public void MsiEnabledWithThreeOfFour_RefusesAnEventfdForTheFourthVector_ButNotItsRemoval([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        // pci_alloc_irq_vectors(3) takes a block of 4, but only 3 vectors are the function's
        // (nvec_used): pci_irq_vector(3) fails, so an eventfd for vector 3 is EINVAL on both
        // profiles; fd -1 for it is 0 on linux-6.12 (nothing to tear down) and EINVAL on
        // linux-6.1 (the range check against the enabled count comes first).
        const string bdf = "0000:01:00.0";
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseProfile(profile).UseMachine(MachineDescriptionReader.Parse(FourMsiJson)).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (_, _, int d) = rig.Open(bdf);
            int e0 = Efd(rig), e1 = Efd(rig), e2 = Efd(rig), e3 = Efd(rig);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 0, e0, e1, e2), Is.Zero, ErrorReason.Current);
            var before = State(rig, bdf);

            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 3, e3), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.EventFdRefs(e3), Is.EqualTo(1), "the refused eventfd is not held");
            Assert.That(State(rig, bdf), Is.EqualTo(before));
            bool modern = profile.Has(VfioPciFeatures.DynamicMsix);
            Assert.That(SetFds(rig, d, VfioPciIndex.IrqMsi, 3, -1), Is.EqualTo(modern ? 0L : Errno.EINVAL.Negative()));
            Assert.That(State(rig, bdf), Is.EqualTo(before));

            // The three vectors deliver, each to its own eventfd.
            Assert.That(Loopback(rig, d, VfioPciIndex.IrqMsi, 0, 3), Is.Zero);
            Assert.That((Take(rig, e0), Take(rig, e1), Take(rig, e2), Take(rig, e3)), Is.EqualTo((1UL, 1UL, 1UL, 0UL)));
        }));
    }
}
