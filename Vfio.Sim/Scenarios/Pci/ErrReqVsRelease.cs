// Race 8 in docs/races.md: the ERR/REQ eventfds against the device's release and the
// unregister's request(). Fixed in v5.9 on both profiles; the design variant
// VfioDesign.ErrReqRelease brings back the two earlier versions:
//   PutWithoutClear (1518ac272e78, "vfio/pci: fix memory leaks of eventfd ctx"): a close puts
//     the eventfds but leaves the pointers set, so the next close puts the freed eventfd again
//     (a refcount underflow, use-after-free) — step 1 fails.
//   PutAndClearUnlocked (5c5866c593bb, "vfio/pci: Clear error and request eventfd ctx after
//     releasing"): cleared, but without igate, while the unbinding task's request() signals
//     the REQ eventfd under igate — a signal on an eventfd the close just released (step 2;
//     it depends on the schedule).
//   PutAndClearUnderIgate (the kernel since b872d0640840, "vfio/pci: fix racy on error and
//     request eventfd ctx"): both steps pass.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Proc;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Pci;

/// <summary><c>err-req-vs-release</c>: the REQ eventfd against the device's close and the unbind's request.</summary>
internal sealed class ErrReqVsRelease : PciIrqScenario
{
    private const int Rounds = 4;

    /// <inheritdoc/>
    public override string Name => "err-req-vs-release";

    /// <inheritdoc/>
    public override string Description =>
        "Race 8: a user registers edu's REQ eventfd, closes the device and the eventfd, opens and closes again; then, four times, closes while an " +
        "unbind's request() signals REQ. The kernel (v5.9+) releases the eventfds under igate and clears them; the VfioDesign.ErrReqRelease " +
        "variants show the earlier double put and use-after-free.";

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "8",
        Kernels = "v5.7–v5.9",
        FixCommits = "b872d0640840 \"vfio/pci: fix racy on error and request eventfd ctx\" (v5.9), after 5c5866c593bb \"vfio/pci: Clear error and request eventfd ctx after releasing\" and 1518ac272e78 \"vfio/pci: fix memory leaks of eventfd ctx\"",
        FixSwitch = "VfioDesign.ErrReqRelease = PutAndClearUnlocked (the v5.8 release; PutWithoutClear, the one before it, is --design ErrReqRelease=PutWithoutClear)",
        Detectors = [RaceDetector.UseAfterFree],
    };

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { ErrReqRelease = on ? VfioErrReqRelease.PutAndClearUnderIgate : VfioErrReqRelease.PutAndClearUnlocked });
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");

        // 1. Close, drop the eventfd, open and close again: nothing may be put twice.
        VfioSession session = sim.Open(user, Edu);
        int req = NewEventfd(user);
        session.Device.SetIrqEventfd(VfioPciIndex.IrqReq, req);
        session.Dispose();
        user.Close(req);
        session = sim.Open(user, Edu);
        session.Dispose();

        // 2. The last close racing the unbind's request(), a few rounds (edu is bound back
        // each time): the unlocked release's window is a few scheduling points wide.
        SimProcess admin = sim.Spawn("admin");
        for (int round = 0; round < Rounds; round++)
        {
            if (round > 0)
            {
                sim.Bind(Edu, Vfio.Pci.VfioPciDriver.DriverName, admin);
            }

            VfioSession s = sim.Open(user, Edu);
            int fd = NewEventfd(user);
            s.Device.SetIrqEventfd(VfioPciIndex.IrqReq, fd);
            KTask closer = user.SpawnThread("close", () =>
            {
                // The user drops its eventfd first: vfio's reference is then the last one.
                user.Close(fd);
                s.Dispose();
            });
            string? from = null;
            KTask unbinder = admin.SpawnThread("unbind", () => from = sim.Unbind(Edu, admin));
            closer.Join();
            unbinder.Join();
            CheckEqual(from, Vfio.Pci.VfioPciDriver.DriverName, $"round {round}: the driver the unbind took edu from");
        }
    }
}
