// Race 9 in docs/races.md (CVE-2024-26812): the INTx trigger eventfd replaced while
// interrupts fire. A user re-plumbs edu's INTx trigger in a loop — a fresh eventfd, then none
// (fd -1), closing each old eventfd as QEMU does — while another thread has edu raise and
// acknowledge its interrupt and writes the unmask eventfd (KVM's resampler).
// linux-6.12 (VfioPciFeatures.PersistentIntxHandler, VirqfdFlushBeforeTriggerRelease): the
// handler stays, the trigger is swapped under it and released after synchronize_irq and a
// flush of the unmask work; a missing trigger is skipped. linux-6.1: the unmask path signals
// whatever trigger the context holds — NULL after fd -1 (an oops), or one already released
// (a use-after-free WARN) — so the run fails.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>intx-trigger-swap</c>: SET_IRQS(INTx, TRIGGER, fd / -1) hammered while edu's INTx fires and is unmasked through the unmask eventfd.</summary>
internal sealed class IntxTriggerSwap : PciIrqScenario
{
    private const int Rounds = 12;

    /// <inheritdoc/>
    public override string Name => "intx-trigger-swap";

    /// <inheritdoc/>
    public override string Description =>
        "Race 9 (CVE-2024-26812): a user replaces edu's INTx trigger eventfd (fd, then -1) in a loop, closing the old ones, while edu's " +
        "interrupt fires and the unmask eventfd is written. linux-6.12's persistent handler holds; on linux-6.1 a NULL or released " +
        "trigger is signalled.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "9",
        Kernels = "≤ v6.8 (CVE-2024-26812)",
        FixCommits = "18c198c96a81 \"vfio/pci: Create persistent INTx handler\" and b620ecbd17a0 \"vfio: Introduce interface to flush virqfd inject workqueue\" (v6.9)",
        FixSwitch = "profile linux-6.1",
        Detectors = [RaceDetector.UseAfterFree, RaceDetector.WarnOrBug],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on) => UseFixedProfile(builder, on);

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        int d = session.Device.Fd;
        int unmask = NewEventfd(user);
        int trigger = NewEventfd(user);
        session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, trigger);
        session.Device.SetIrqUnmaskEventfd(VfioPciIndex.IrqIntx, unmask);

        bool done = false;
        KTask irq = user.SpawnThread("irq", () =>
        {
            while (!Volatile.Read(ref done))
            {
                // The resampler acks while edu still asserts (masked again, signalled again), then after the ack.
                EduRaise(user, d);
                Poke(user, unmask);
                KTask.Schedule();
                EduAck(user, d);
                Poke(user, unmask);
                KTask.Msleep(1);
            }
        });

        long delivered = 0;
        for (int i = 0; i < Rounds; i++)
        {
            int next = NewEventfd(user);
            session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, next);
            delivered += (long)Drain(user, trigger);
            user.Close(trigger);
            trigger = next;
            KTask.Msleep(1);
            session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, -1);
            KTask.Schedule();
        }

        Volatile.Write(ref done, true);
        irq.Join();
        session.Device.DisableIrqs(VfioPciIndex.IrqIntx);
        user.Close(trigger);
        user.Close(unmask);
        session.Dispose();
        Check(!sim.Machine.Interrupts.HasIntxHandler(sim.Device(Edu)), "no INTx handler is left once INTx is disabled and the device closed", "edu's INTx handler is still installed");
        Check(delivered >= 0, "interrupts reach whichever trigger is installed", $"{delivered}");
    }
}
