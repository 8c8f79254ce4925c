// Release-dependent behaviour of samples/vfio-mdev/mtty.c as named profile features (see
// Vfio.Kernel/KernelFeature.cs). Both arrived in v6.7 through the vfio pull for that
// release; checked against the real 6.1.192 and 6.12.118 kernels with mtty loaded
// (Vfio.Tests/Mdev/Oracle/mtty_probe.c).

using Vfio.Kernel;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>Profile features of the mtty sample.</summary>
public static class MttyFeatures
{
    /// <summary>
    /// SET_IRQS follows the uapi: INTx is automasked when it fires and MASK/UNMASK work
    /// (eventfd mask/unmask and every MSI mask are ENOTTY), a trigger needs the index active
    /// or no index active, MSI-X/ERR/REQ are ENOTTY, REQ leaves GET_IRQ_INFO, and
    /// close_device drops the eventfds. Before, mask/unmask were accepted and ignored, the
    /// eventfds leaked, and an interrupt raised before any SET_IRQS dereferenced a NULL
    /// eventfd (a kernel oops).
    /// </summary>
    public static KernelFeature IrqOverhaul { get; } = new()
    {
        Name = nameof(IrqOverhaul),
        Description = "SET_IRQS follows the uapi (INTx automask and working MASK/UNMASK, ENOTTY for eventfd mask, MSI mask, MSI-X/ERR/REQ; REQ gone from GET_IRQ_INFO; eventfds dropped at close); before, mask/unmask were ignored, eventfds leaked and an interrupt with no IRQ set up oopsed.",
        Since = new(6, 7),
        CommitNotEstablished = "\"vfio/mtty: Overhaul mtty interrupt handling\" (Alex Williamson, merged for v6.7); its mainline id could not be looked up here. Behaviour checked on the real 6.1.192 and 6.12.118.",
    };

    /// <summary>
    /// The device migrates: migration flags STOP_COPY|P2P|PRE_COPY, a 24-byte header plus
    /// 36 bytes per port, no-op DMA logging ops, and VFIO_DEVICE_RESET that returns the
    /// migration state to RUNNING. Before, the migration features were ENOTTY.
    /// </summary>
    public static KernelFeature MigrationSupport { get; } = new()
    {
        Name = nameof(MigrationSupport),
        Description = "mtty migrates (STOP_COPY|P2P|PRE_COPY, header + 36 bytes a port, no-op DMA logging, RESET back to RUNNING); before, every migration and DMA-logging feature was ENOTTY.",
        Since = new(6, 7),
        CommitNotEstablished = "\"vfio/mtty: Enable migration support\" (Alex Williamson, merged for v6.7); its mainline id could not be looked up here. Behaviour checked on the real 6.1.192 and 6.12.118.",
    };
}
