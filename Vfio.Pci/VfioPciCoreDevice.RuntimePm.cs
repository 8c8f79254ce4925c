// Models runtime power management in drivers/vfio/pci/vfio_pci_core.c (v6.12; v6.1 behaves
// the same in everything user space can see — both real kernels were checked): the
// driver's runtime PM callbacks (vfio_pci_core_pm_ops), runtime PM at registration, and
// the VFIO_DEVICE_FEATURE low-power features.
//
// Usage count of the PCI function while vfio-pci has it (disable_idle_d3 off): 0 while
// nobody has the device open, so it sits runtime-suspended (D3hot with a PM capability);
// +1 from open (vfio_pci_core_enable) to close; +1 around each device-fd ioctl (the vfio
// core's wrapper), each read/write (vfio_pci_rw) and each set-wide reset; -1 while user
// space has low power engaged (LOW_POWER_ENTRY*), so an open but idle device suspends
// too. With disable_idle_d3 the registration keeps its count and the function stays in
// D0 until user space engages low power.
//
// While engaged (pm_runtime_engaged): the BAR mappings were zapped at entry and every
// fault is SIGBUS; an ioctl or a read/write resumes the device for its duration and it
// suspends again afterwards — unless a wake-up eventfd was given, in which case the
// resume signals it once and leaves low power (drops the eventfd and takes the count
// back). LOW_POWER_EXIT leaves it explicitly (0 even when not engaged); close leaves it
// (without signalling) and releases the eventfd. The runtime suspend masks INTx when INTx
// is the active index (pm_intx_masked) and the resume unmasks it; an interrupt the
// function raised meanwhile shows when it is unmasked (pci_check_and_unmask_intx fails, so
// it stays masked and the trigger is signalled), as after any masked period.
//
// Lock rule: memory_lock (held for write) protects _pmRuntimeEngaged and _pmWakeEventfdCtx;
// faults read them under memory_lock for read. The runtime PM core runs the callbacks with
// no lock of its own held, never two at once; each takes memory_lock, drops it, and then
// takes igate to mask or unmask INTx (on linux-6.12, LockedIntxMaskingOps). So no path may
// call into runtime PM — resume, get, put — with memory_lock or igate held, except
// pm_runtime_get_noresume and pm_runtime_put_noidle, which only count; dev_set->lock may be
// held (open, close, the set-wide reset), as it is above both.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const string FeatureIoctl = "VFIO_DEVICE_FEATURE";

    /// <summary>vfio_pci_core_pm_ops: the driver's runtime PM callbacks (dev-&gt;driver-&gt;pm).</summary>
    internal static readonly DevPmOps PmOps = new()
    {
        RuntimeSuspend = static d => ((VfioPciCoreDevice)d.DriverData!).RuntimeSuspend(),
        RuntimeResume = static d => ((VfioPciCoreDevice)d.DriverData!).RuntimeResume(),
    };

    // vdev->pm_runtime_engaged and vdev->pm_wake_eventfd_ctx (memory_lock).
    private bool _pmRuntimeEngaged;
    private EventFdContext? _pmWakeEventfdCtx;

    // vdev->pm_intx_masked: the last runtime suspend masked INTx (the PM core serialises the callbacks).
    private bool _pmIntxMasked;

    /// <summary>vdev-&gt;pm_runtime_engaged: user space put the device in low power.</summary>
    internal bool PmRuntimeEngaged => Volatile.Read(ref _pmRuntimeEngaged);

    /// <summary>vdev-&gt;pm_wake_eventfd_ctx: the eventfd the next resume signals, or null.</summary>
    internal EventFdContext? PmWakeEventfd => Volatile.Read(ref _pmWakeEventfdCtx);

    /// <summary>vdev-&gt;pm_intx_masked: the last runtime suspend masked INTx.</summary>
    internal bool PmIntxMasked => Volatile.Read(ref _pmIntxMasked);

    private bool DisableIdleD3 => Driver.Options.DisableIdleD3;

    // ---- Registration.

    /// <summary>
    /// The runtime PM part of vfio_pci_core_register_device(), after the D0 transition:
    /// dev-&gt;driver-&gt;pm set, runtime PM allowed, and (unless disable_idle_d3) the count
    /// the PCI core took for the probe dropped, so the idle function suspends now.
    /// </summary>
    private void RegisterRuntimePm()
    {
        Driver.UsePmOps(PmOps);
        Pdev.Power.Allow();
        if (!DisableIdleD3)
        {
            // pm_runtime_put() only queues the idle check on pm_wq. A VF that registers while
            // its PF's sriov_configure enables it (under the PF's memory_lock) gets its check
            // from the PF once that lock is dropped, as the worker would run it; every other
            // registration runs it at once (see RuntimePm.cs).
            if (Pdev.IsVirtfn && Pdev.Physfn.DriverData is VfioPciCoreDevice { SriovEnabling: true })
            {
                Pdev.Power.PutNoidle();
            }
            else
            {
                Pdev.Power.Put();
            }
        }
    }

    /// <summary>
    /// The runtime PM part of vfio_pci_core_unregister_device() and of a failed registration:
    /// the probe's count taken back (unless disable_idle_d3) and runtime PM forbidden, which
    /// resumes the function.
    /// </summary>
    private void UnregisterRuntimePm()
    {
        if (!DisableIdleD3)
        {
            Pdev.Power.GetNoresume();
        }

        Pdev.Power.Forbid();
    }

    // ---- The callbacks (vfio_pci_core_runtime_suspend / _resume).

    /// <summary>
    /// vfio_pci_core_runtime_suspend(): back to D0 first (user space may have written D3hot;
    /// a No_Soft_Reset- function gets the state saved then) so the PCI core saves a D0
    /// state, then INTx masked if it is the active index — remembered only if this masked it.
    /// </summary>
    private int RuntimeSuspend()
    {
        MemoryLock.DownWrite();
        try
        {
            SetPowerStateD0();
        }
        finally
        {
            MemoryLock.UpWrite();
        }

        Volatile.Write(ref _pmIntxMasked, IsIntx && IntxMaskExternal());
        return 0;
    }

    /// <summary>
    /// vfio_pci_core_runtime_resume(): a wake-up eventfd is signalled and low power left;
    /// then INTx unmasked if the suspend masked it.
    /// </summary>
    private int RuntimeResume()
    {
        MemoryLock.DownWrite();
        try
        {
            if (_pmWakeEventfdCtx is { } ctx)
            {
                ctx.Signal();
                RuntimePmExitLocked();
            }
        }
        finally
        {
            MemoryLock.UpWrite();
        }

        if (Volatile.Read(ref _pmIntxMasked))
        {
            IntxUnmaskExternal();
        }

        return 0;
    }

    /// <summary>vfio_pci_intx_mask(): __vfio_pci_intx_mask under igate on linux-6.12, without it on linux-6.1.</summary>
    private bool IntxMaskExternal()
    {
        bool locked = Has(VfioPciFeatures.LockedIntxMaskingOps);
        if (locked)
        {
            _igate.Lock();
        }

        try
        {
            return IntxMaskCore();
        }
        finally
        {
            if (locked)
            {
                _igate.Unlock();
            }
        }
    }

    /// <summary>vfio_pci_intx_unmask(): __vfio_pci_intx_unmask under igate on linux-6.12, without it on linux-6.1.</summary>
    private void IntxUnmaskExternal() => WithMaskingLock(Has(VfioPciFeatures.LockedIntxMaskingOps), mask: false);

    // ---- VFIO_DEVICE_FEATURE_LOW_POWER_*.

    /// <summary>vfio_pci_core_pm_entry(): SET only, no data; engage low power without a wake-up eventfd.</summary>
    private int PmEntry(uint flags, ulong argsz)
    {
        int ret = VfioDeviceFeatures.Check(flags, argsz, VfioFeature.Set, 0);
        return ret != 1 ? ret : RuntimePmEntry(null, "LOW_POWER_ENTRY");
    }

    /// <summary>
    /// vfio_pci_core_pm_entry_with_wakeup(): SET only with an 8-byte
    /// vfio_device_low_power_entry_with_wakeup; a negative fd is EINVAL, a closed one EBADF, a
    /// file that is not an eventfd EINVAL (reserved is not checked). The eventfd reference
    /// is dropped again if low power was already engaged.
    /// </summary>
    private int PmEntryWithWakeup(uint flags, ulong arg, ulong argsz)
    {
        const string name = "LOW_POWER_ENTRY_WITH_WAKEUP";
        int ret = VfioDeviceFeatures.Check(flags, argsz, VfioFeature.Set, (ulong)VfioArg.SizeOf<VfioDeviceLowPowerEntryWithWakeup>());
        if (ret != 1)
        {
            return ret;
        }

        VfioDeviceLowPowerEntryWithWakeup entry = default;
        if (VfioArg.CopyInPrefix(arg, VfioArg.SizeOf<VfioDeviceLowPowerEntryWithWakeup>(), ref entry) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{FeatureIoctl}: {name}: cannot read the argument at 0x{arg:x}");
        }

        if (entry.WakeupEventfd < 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{FeatureIoctl}: {name}: wakeup_eventfd {entry.WakeupEventfd} is negative");
        }

        ret = EventFdContext.Fdget(entry.WakeupEventfd, $"{FeatureIoctl}: {name}", out EventFdContext? ctx);
        if (ret != 0)
        {
            return ret;
        }

        ret = RuntimePmEntry(ctx, name);
        if (ret != 0)
        {
            ctx!.Put();
        }

        return ret;
    }

    /// <summary>
    /// vfio_pci_core_pm_exit(): SET only, no data; always 0. The ioctl wrapper's resume has
    /// already left low power when a wake-up eventfd was engaged; otherwise this does.
    /// </summary>
    private int PmExit(uint flags, ulong argsz)
    {
        int ret = VfioDeviceFeatures.Check(flags, argsz, VfioFeature.Set, 0);
        if (ret != 1)
        {
            return ret;
        }

        RuntimePmExit();
        return 0;
    }

    /// <summary>
    /// vfio_pci_runtime_pm_entry(): BAR mappings zapped and memory_lock held for write;
    /// EINVAL if low power is engaged already; else engaged, the eventfd kept, and the
    /// open's count dropped without an idle check — the ioctl wrapper's put suspends it.
    /// </summary>
    private int RuntimePmEntry(EventFdContext? ctx, string name)
    {
        ZapAndDownWriteMemoryLock();
        try
        {
            if (_pmRuntimeEngaged)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{FeatureIoctl}: {name}: {Pname} is in low power already (LOW_POWER_EXIT first)");
            }

            Volatile.Write(ref _pmRuntimeEngaged, true);
            Volatile.Write(ref _pmWakeEventfdCtx, ctx);
            Pdev.Power.PutNoidle();
            return 0;
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }

    /// <summary>__vfio_pci_runtime_pm_exit(): if engaged, disengage, take the count back and drop the wake-up eventfd.</summary>
    private void RuntimePmExitLocked()
    {
        MemoryLock.AssertHeld();
        if (!_pmRuntimeEngaged)
        {
            return;
        }

        Volatile.Write(ref _pmRuntimeEngaged, false);
        Pdev.Power.GetNoresume();
        if (_pmWakeEventfdCtx is { } ctx)
        {
            Volatile.Write(ref _pmWakeEventfdCtx, null);
            ctx.Put();
        }
    }

    /// <summary>vfio_pci_runtime_pm_exit(): <see cref="RuntimePmExitLocked"/> under memory_lock.</summary>
    private void RuntimePmExit()
    {
        MemoryLock.DownWrite();
        try
        {
            RuntimePmExitLocked();
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }

    // ---- The device set.

    /// <summary>
    /// vfio_pci_dev_set_pm_runtime_get(): every function of the set resumed and counted
    /// before a set-wide reset; on a failure the ones already counted are put again and the
    /// -errno returned. The caller holds dev_set-&gt;lock.
    /// </summary>
    internal static int DevSetPmRuntimeGetLocked(VfioDeviceSet set)
    {
        set.Lock.AssertHeld();
        IReadOnlyList<VfioDevice> devices = set.DevicesLocked;
        for (int i = 0; i < devices.Count; i++)
        {
            if (devices[i] is not VfioPciCoreDevice cur)
            {
                continue;
            }

            int ret = cur.Pdev.Power.ResumeAndGet();
            if (ret != 0)
            {
                for (int j = i - 1; j >= 0; j--)
                {
                    if (devices[j] is VfioPciCoreDevice done)
                    {
                        done.Pdev.Power.Put();
                    }
                }

                return ret;
            }
        }

        return 0;
    }

    /// <summary>The puts that pair with <see cref="DevSetPmRuntimeGetLocked"/>. The caller holds dev_set-&gt;lock.</summary>
    internal static void DevSetPmRuntimePutLocked(VfioDeviceSet set)
    {
        set.Lock.AssertHeld();
        foreach (VfioDevice d in set.DevicesLocked)
        {
            if (d is VfioPciCoreDevice cur)
            {
                cur.Pdev.Power.Put();
            }
        }
    }
}
