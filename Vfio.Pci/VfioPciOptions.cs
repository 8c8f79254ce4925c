// Models the module parameters of drivers/vfio/pci/vfio_pci.c (v6.12): ids=, nointxmask,
// disable_denylist, enable_sriov, disable_vga and disable_idle_d3.

namespace Vfio.Pci;

/// <summary>vfio-pci's module parameters (given at load, like <c>modprobe vfio-pci ids=…</c>).</summary>
public sealed record VfioPciOptions
{
    /// <summary>
    /// <c>ids=</c>: a comma-separated list of <c>vendor:device[:subvendor[:subdevice[:class[:class_mask]]]]</c>
    /// in hex, added as dynamic ids at load so that matching devices bind without driver_override.
    /// </summary>
    public string? Ids { get; init; }

    /// <summary><c>disable_denylist</c>: allow binding the devices of the built-in denylist (Intel QAT).</summary>
    public bool DisableDenylist { get; init; }

    /// <summary><c>nointxmask</c>: do not use DisINTx masking (pci_2_3) even where the device supports it.</summary>
    public bool NoIntxMask { get; init; }

    /// <summary>
    /// <c>enable_sriov</c>: let user space enable the VFs of a PF bound to vfio-pci through its
    /// <c>sriov_numvfs</c> (off: -ENOENT). The VFs bind to vfio-pci and open only with the PF's
    /// VF token. Off by default, as in the kernel.
    /// </summary>
    public bool EnableSriov { get; init; }

    /// <summary><c>disable_vga</c>: give VGA-class devices no VGA region (index 8 is then EINVAL, as for any other device).</summary>
    public bool DisableVga { get; init; }

    /// <summary>
    /// <c>disable_idle_d3</c>: do not runtime-suspend (D3hot) functions bound to vfio-pci while
    /// nobody uses them; they stay in D0. User space can still engage low power through
    /// VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY.
    /// </summary>
    public bool DisableIdleD3 { get; init; }
}
