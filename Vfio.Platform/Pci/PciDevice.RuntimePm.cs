// Models the runtime PM side of the PCI core (v6.12): pci_pm_runtime_suspend /
// pci_pm_runtime_resume / pci_pm_runtime_idle of drivers/pci/pci-driver.c (the PCI bus's
// dev_pm_ops, which run the bound driver's callbacks), pci_finish_runtime_suspend and the
// D0 half of pci_pm_default_resume_early of drivers/pci/pci.c, and pci_pm_init's initial
// state (runtime PM enabled, the device active, forbidden until a driver allows it).
//
// Suspend: an unbound function only has its state saved and stays in D0; a bound one runs
// its driver's runtime_suspend (a failure stops here), then the PCI core saves the config
// state and puts the function in D3hot (with a PM capability — without one it stays in D0
// and is "suspended" only in the runtime PM sense), so BAR decode stops. Resume: back to
// D0 (pci_power_up, which reprograms the BARs a No_Soft_Reset- function lost), the saved
// state restored, then the driver's runtime_resume. Idle: 0 for an unbound function,
// -ENOSYS for a driver without PM ops (so it is never suspended by an idle check), else the
// driver's runtime_idle or 0.
//
// Lock rule: the runtime PM core runs these with no lock of its own held and never two at
// once for a function (SUSPENDING/RESUMING), so _rpmSavedState needs no lock.

using Vfio.Kernel;
using Vfio.Platform.Base;

namespace Vfio.Platform.Pci;

public partial class PciDevice
{
    // pdev->saved_config_space while state_saved: what the runtime suspend saved, put back
    // by the runtime resume (only the PM callbacks touch it; see the header).
    private PciSavedState? _rpmSavedState;

    /// <summary>The runtime half of pci_dev_pm_ops, the PCI bus's dev_pm_ops.</summary>
    internal static DevPmOps BusRuntimePmOps { get; } = new()
    {
        RuntimeSuspend = static d => ((PciDevice)d).PmRuntimeSuspend(),
        RuntimeResume = static d => ((PciDevice)d).PmRuntimeResume(),
        RuntimeIdle = static d => ((PciDevice)d).PmRuntimeIdle(),
    };

    /// <summary>pci_power_name(pdev-&gt;current_state), as the <c>power_state</c> attribute shows it.</summary>
    public string PowerStateName => PowerState switch
    {
        0 => "D0",
        1 => "D1",
        2 => "D2",
        _ => "D3hot",
    };

    /// <summary>pci_pm_runtime_suspend().</summary>
    private int PmRuntimeSuspend()
    {
        if (PciDriver is null)
        {
            _rpmSavedState = SaveState();
            return 0;
        }

        _rpmSavedState = null;
        if (Driver!.Pm?.RuntimeSuspend is { } suspend)
        {
            int err = suspend(this);
            if (err == Errno.EBUSY.Negative() || err == Errno.EAGAIN.Negative())
            {
                return err;
            }

            if (err != 0)
            {
                Machine.Kernel.Log.Err($"pci {Name}: can't suspend (ret {err})");
                return err;
            }
        }

        _rpmSavedState = SaveState();
        FinishRuntimeSuspend();
        return 0;
    }

    /// <summary>
    /// pci_finish_runtime_suspend(): the target state is D3hot for a function with a PM
    /// capability, D0 (nothing to do) without one; pci_set_power_state writes PMCSR and waits
    /// the D3hot delay.
    /// </summary>
    private void FinishRuntimeSuspend()
    {
        if (_pmCap == 0 || PowerState == 3)
        {
            return;
        }

        uint csr = ReadConfig(_pmCap + PciRegs.PmCtrl, 2);
        WriteConfig(_pmCap + PciRegs.PmCtrl, (csr & ~(uint)PciRegs.PmCtrlStateMask) | 3u, 2);
        Msleep(10);
    }

    /// <summary>pci_pm_runtime_resume(): D0 and the saved state back, then the driver's runtime_resume.</summary>
    private int PmRuntimeResume()
    {
        SetFullPowerState();
        if (_rpmSavedState is { } saved)
        {
            _rpmSavedState = null;
            RestoreState(saved);
        }

        if (PciDriver is null)
        {
            return 0;
        }

        return Driver!.Pm?.RuntimeResume is { } resume ? resume(this) : 0;
    }

    /// <summary>pci_pm_runtime_idle().</summary>
    private int PmRuntimeIdle()
    {
        if (PciDriver is null)
        {
            return 0;
        }

        if (Driver!.Pm is not { } pm)
        {
            return Errno.ENOSYS.Negative();
        }

        return pm.RuntimeIdle is { } idle ? idle(this) : 0;
    }
}
