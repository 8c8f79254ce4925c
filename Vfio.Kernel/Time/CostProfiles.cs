// The calibrated cost profiles and the sources of their figures (see docs/cost-model.md).

namespace Vfio.Kernel;

internal static class CostProfiles
{
    // PROVISIONAL: the figures below are placeholders until the calibration lands
    // (docs/cost-model.md gives each figure's source and the check that the composed costs
    // meet the published per-page figures).
    internal static CostProfile CreateLinuxX86() => new(
        "linux-x86",
        "Linux 6.x on an x86-64 server with VT-d/AMD-Vi: type1 map ~60 ns per 4 KiB page, unmap ~70 ns, ~3 µs per 2 MiB page, a syscall ~90 ns",
        new Dictionary<CostOp, double>
        {
            [CostOp.SyscallEntry] = 90,
            [CostOp.IoctlCopy] = 20,
            [CostOp.GupPage] = 30,
            [CostOp.GupRun] = 5,
            [CostOp.UnpinPage] = 30,
            [CostOp.UnpinRun] = 5,
            [CostOp.PteWrite] = 15,
            [CostOp.PteClear] = 15,
            [CostOp.PageTableAlloc] = 300,
            [CostOp.IotlbFlush] = 1000,
            [CostOp.IotlbInvalidate] = 10,
            [CostOp.IotlbHit] = 5,
            [CostOp.IotlbWalk] = 100,
            [CostOp.LockHandoff] = 1000,
            [CostOp.EventfdSignal] = 100,
            [CostOp.InterruptDelivery] = 1000,
            [CostOp.MmioAccess] = 200,
            [CostOp.LockedVmAccount] = 50,
        });
}
