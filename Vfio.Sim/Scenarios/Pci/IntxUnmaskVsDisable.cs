// Race 10 in docs/races.md (CVE-2024-26810), first half: unmasking INTx through the config
// space (clearing COMMAND.INTX_DISABLE while edu still asserts, which signals the trigger
// again) and through the unmask eventfd, while another thread enables INTx, registers the
// unmask eventfd and disables INTx (SET_IRQS TRIGGER count 0) in a loop, the user having
// dropped its own copy of each trigger eventfd. linux-6.12 (VfioPciFeatures.LockedIntxMaskingOps)
// runs the config-space path under igate, so it never overlaps the teardown; on linux-6.1 it
// runs unlocked and can signal the trigger the disable is releasing (a use-after-free WARN)
// or find none (a NULL dereference), depending on the schedule. The second half is
// IntxExclusiveAutoEnable.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>intx-unmask-vs-disable</c>: INTx unmask paths racing INTx setup and teardown.</summary>
internal sealed class IntxUnmaskVsDisable : PciIrqScenario
{
    private const int Rounds = 10;

    /// <inheritdoc/>
    public override string Name => "intx-unmask-vs-disable";

    /// <inheritdoc/>
    public override string Description =>
        "Race 10 (CVE-2024-26810): config-space and eventfd unmasks of edu's INTx racing SET_IRQS enable/disable (count 0). " +
        "linux-6.12 serialises the config path on igate; linux-6.1 runs it unlocked and can signal a trigger being released.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "10",
        Kernels = "≤ v6.8 (CVE-2024-26810)",
        FixCommits = "810cd4bb5345 \"vfio/pci: Lock external INTx masking ops\" and b620ecbd17a0 \"vfio: Introduce interface to flush virqfd inject workqueue\" (v6.9)",
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
        PciDevice edu = sim.Device(Edu);
        SimProcess user = sim.Spawn("qemu");
        VfioSession session = sim.Open(user, Edu);
        int d = session.Device.Fd;
        ushort cmd = ReadCommand(user, d);

        bool done = false;
        int unmask = NewEventfd(user);
        KTask config = user.SpawnThread("config", () =>
        {
            while (!Volatile.Read(ref done))
            {
                // Clearing the bit while edu still asserts unmasks and signals the trigger again.
                EduRaise(user, d);
                WriteCommand(user, d, (ushort)(cmd | PciRegs.CommandIntxDisable));
                WriteCommand(user, d, cmd);
                EduAck(user, d);
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

            // The user drops its copy first (vfio holds its own): the disable releases the last reference.
            user.Close(t);
            session.Device.DisableIrqs(VfioPciIndex.IrqIntx);
            KTask.Msleep(1);
        }

        Volatile.Write(ref done, true);
        config.Join();
        user.Close(unmask);

        session.Dispose();
        Check(!sim.Machine.Interrupts.HasIntxHandler(edu), "no INTx handler is left", "edu's INTx handler is still installed");
    }
}
