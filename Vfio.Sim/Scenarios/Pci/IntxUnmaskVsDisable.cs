// Race 10 in docs/races.md (CVE-2024-27437 and CVE-2024-26810) on an exclusive INTx line
// (vfio-pci loaded with nointxmask=1, so masking happens at the interrupt controller):
//  2. An interrupt already pending when INTx is enabled while the user has it masked
//     (COMMAND.INTX_DISABLE): on linux-6.1 request_irq enables the line, the interrupt fires
//     and disables it, then vfio disables it again — depth 2, and the user's unmask only
//     takes one away, so the interrupt never arrives. linux-6.12
//     (VfioPciFeatures.ExclusiveIntxNoAutoEnable) requests the line disabled and the user's
//     unmask delivers it once.
//  1. Unmasking through the config space (clearing COMMAND.INTX_DISABLE) and through the
//     unmask eventfd while another thread enables INTx, registers the unmask eventfd and
//     disables INTx (SET_IRQS TRIGGER count 0) in a loop. linux-6.12
//     (LockedIntxMaskingOps, VirqfdFlushBeforeTriggerRelease) serialises the config path on
//     igate; on linux-6.1 it runs unlocked against the teardown and enables a line it no
//     longer owns ("Unbalanced enable") or touches a freed context.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>intx-unmask-vs-disable</c>: INTx unmask paths racing INTx setup and teardown on an exclusive line.</summary>
internal sealed class IntxUnmaskVsDisable : PciIrqScenario
{
    private const int Rounds = 10;

    /// <inheritdoc/>
    public override string Name => "intx-unmask-vs-disable";

    /// <inheritdoc/>
    public override string Description =>
        "Race 10 (CVE-2024-27437, CVE-2024-26810) on an exclusive INTx line: an interrupt pending when INTx is enabled masked must " +
        "arrive once the user unmasks (linux-6.1 leaves the line disabled twice), and config-space and eventfd unmasks racing " +
        "SET_IRQS enable/disable must stay balanced (linux-6.1 runs the config path without igate).";

    /// <inheritdoc/>
    protected override VfioPciOptions? PciOptions => new() { NoIntxMask = true };

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        PciDevice edu = sim.Device(Edu);
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        int d = session.Device.Fd;
        ushort cmd = ReadCommand(user, d);

        // 1. Unmasks racing setup and teardown.
        bool done = false;
        int unmask = NewEventfd(user);
        KTask config = user.SpawnThread("config", () =>
        {
            while (!Volatile.Read(ref done))
            {
                EduRaise(user, d);
                WriteCommand(user, d, (ushort)(cmd | PciRegs.CommandIntxDisable));
                EduAck(user, d);
                WriteCommand(user, d, cmd);
                Poke(user, unmask);
                KTask.Msleep(1);
            }
        });

        for (int i = 0; i < Rounds; i++)
        {
            int t = NewEventfd(user);
            session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, t);
            session.Device.SetIrqUnmaskEventfd(VfioPciIndex.IrqIntx, unmask);
            KTask.Schedule();
            session.Device.DisableIrqs(VfioPciIndex.IrqIntx);
            user.Close(t);
            KTask.Msleep(1);
        }

        Volatile.Write(ref done, true);
        config.Join();
        user.Close(unmask);

        // 2. The interrupt between request_irq and the mask.
        int trigger = NewEventfd(user);
        WriteCommand(user, d, (ushort)(cmd | PciRegs.CommandIntxDisable));
        EduRaise(user, d);
        session.Device.SetIrqEventfd(VfioPciIndex.IrqIntx, trigger);
        CheckEqual(Drain(user, trigger), 0UL, "signals while the user has INTx masked");
        WriteCommand(user, d, cmd);

        // enable_irq replays the line from a task of its own: give it time (virtual) to run.
        ulong arrived = 0;
        for (int i = 0; i < 50 && arrived == 0; i++)
        {
            KTask.Msleep(1);
            arrived = Drain(user, trigger);
        }

        int depth = sim.Machine.Interrupts.IntxDisableDepth(edu);
        Check(arrived == 1, "the interrupt pending when INTx was enabled reaches the user once it unmasks",
            depth > 0
                ? $"it never arrived: the INTx line is still disabled (depth {depth}) — an interrupt between request_irq and the mask disabled it twice"
                : $"{arrived} signals");
        EduAck(user, d);
        session.Device.UnmaskIrq(VfioPciIndex.IrqIntx);
        session.Device.DisableIrqs(VfioPciIndex.IrqIntx);
        user.Close(trigger);

        session.Dispose();
        Check(!sim.Machine.Interrupts.HasIntxHandler(edu), "no INTx handler is left", "edu's INTx handler is still installed");
    }
}
