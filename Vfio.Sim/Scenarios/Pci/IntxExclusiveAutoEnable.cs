// Race 10 in docs/races.md (CVE-2024-27437), second half, on an exclusive INTx line (vfio-pci
// loaded with nointxmask=1, so masking is the interrupt controller's disable depth): an
// interrupt already pending when the user enables INTx with its mask set
// (COMMAND.INTX_DISABLE). linux-6.1 lets request_irq enable the line; the interrupt fires and
// disables it, then vfio disables it again for the mask — depth 2, and the user's unmask
// removes only one, so the interrupt never arrives. linux-6.12
// (VfioPciFeatures.ExclusiveIntxNoAutoEnable) requests the line disabled and enables it only
// when unmasked: the interrupt arrives once. The first half is IntxUnmaskVsDisable.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>intx-exclusive-autoenable</c>: an interrupt between request_irq and the mask of an exclusive INTx line.</summary>
internal sealed class IntxExclusiveAutoEnable : PciIrqScenario
{
    /// <inheritdoc/>
    public override string Name => "intx-exclusive-autoenable";

    /// <inheritdoc/>
    public override string Description =>
        "Race 10 (CVE-2024-27437) on an exclusive INTx line: an interrupt pending when the user enables INTx masked must arrive " +
        "once the user unmasks. linux-6.12 requests the line without auto-enable; linux-6.1 leaves it disabled twice and the " +
        "interrupt is lost.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "10",
        Kernels = "≤ v6.8 (CVE-2024-27437)",
        FixCommits = "fe9a7082684e \"vfio/pci: Disable auto-enable of exclusive INTx IRQ\" (v6.9)",
        FixSwitch = "profile linux-6.1",
        Detectors = [RaceDetector.Invariant],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on) => UseFixedProfile(builder, on);

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
        Detect(RaceDetector.Invariant, arrived == 1, "the interrupt pending when INTx was enabled reaches the user once it unmasks",
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
