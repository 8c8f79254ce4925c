// Models drivers/vfio/pci/vfio_pci_intrs.c (v6.12, and the v6.1 design where a profile
// feature says so) and the AER error_detected callback of vfio_pci_core.c that signals ERR:
// VFIO_DEVICE_SET_IRQS for INTx, MSI, MSI-X, ERR and REQ.
//
// INTx. Enabling requests the function's line: shared when DisINTx masking works (pci_2_3),
// exclusive otherwise. Every interrupt masks itself (DisINTx, or disable_irq on an exclusive
// line) and signals the trigger eventfd; it stays masked until UNMASK (NONE, BOOL, or the
// unmask eventfd — a virqfd, see Vfio.Core/VfioVirqfd.cs); an UNMASK while the function
// still asserts leaves it masked and signals again. The user's virtual COMMAND.INTX_DISABLE
// (virq_disabled) masks and unmasks the same way and survives mode changes.
//   linux-6.12 (PersistentIntxHandler and friends): the handler is requested once per enable
//   with the irq context as its data; SET_IRQS swaps the trigger under it (NULL tolerated)
//   and releases the old one after synchronize_irq and a flush of the unmask virqfd's
//   inject work; an exclusive line is requested without auto-enable; the config-space
//   masking path takes igate.
//   linux-6.1: a trigger change frees the IRQ and requests it again with the device as data,
//   the old trigger is put before the pointer is cleared, loopback and inject signal the
//   trigger without looking for NULL, the exclusive line is auto-enabled and disabled
//   afterwards, and the config-space masking path runs without igate. Each of those windows
//   is a race of docs/races.md (9, 10); a use of a freed context WARNs as KASAN would report it.
//
// MSI and MSI-X. Enabling allocates start+count vectors the way pci_alloc_irq_vectors does
// (InterruptController vectors, the composed messages written to the MSI capability or the
// MSI-X table); fewer available than asked makes the ioctl return that positive count (the
// kernel's quirk). Each eventfd attaches a handler to its vector (request_irq; an MSI-X entry
// is unmasked, its cached message rewritten first); -1 leaves the vector without one; a bad
// fd unwinds what the call assigned (and disables the index if the call enabled it).
// linux-6.12 (DynamicMsix) adds MSI-X vectors while enabled; linux-6.1 refuses a range past
// the vectors allocated at enable.
//
// Lock rule (order left to right): igate → memory_lock → irqlock. igate serialises every
// SET_IRQS action and, on linux-6.12, the config-space masking path. irqlock (a spinlock)
// protects the INTx masked state; the INTx handler runs under it only. Interrupt handlers
// take no mutex. The ERR/REQ eventfds are read under igate.

using System.Numerics;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const string SetIrqsName = "VFIO_DEVICE_SET_IRQS";

    // vdev->irq_type when no index is active (VFIO_PCI_NUM_IRQS).
    private const int IrqNone = VfioPciIndex.NumIrqs;

    private static readonly LockClass s_irqlockClass = LockClass.Get("vfio_pci_core_device.irqlock");

    // vdev->irqlock: the INTx masked state.
    private KSpinLock _irqlock = null!;

    // The unmask/mask virqfds of this device (virqfd_lock and its cleanup work).
    private VfioVirqfdSet _virqfds = null!;

    // vdev->irq_type (written under igate; the linux-6.1 masking path reads it unlocked).
    private int _irqType = IrqNone;

    // vdev->virq_disabled: the user's COMMAND.INTX_DISABLE.
    private bool _virqDisabled;

    // vdev->ctx[0] while INTx is enabled. On linux-6.1 it dangles after disable (kfree
    // without clearing), which is what a racing masking path then touches.
    private IrqCtx? _intx;

    // MSI/MSI-X: the contexts per vector, the controller vector behind each allocated one
    // (0: not allocated), and the trigger each vector's handler was requested with.
    private MsiState? _msi;

    // vdev->msi_qmax: log2 of the MSI vectors enabled, what the virtual QMASK reports.
    private int _msiQmax;

    /// <summary>The active interrupt index (VFIO_PCI_INTX/MSI/MSIX_IRQ_INDEX), or -1 when none.</summary>
    internal int ActiveIrqIndex => Volatile.Read(ref _irqType) == IrqNone ? -1 : Volatile.Read(ref _irqType);

    /// <summary>True while INTx is masked (auto-masked by an interrupt, or by MASK / virq_disabled).</summary>
    internal bool IntxMasked => _intx is { Freed: false, Masked: true };

    /// <summary>vdev-&gt;virq_disabled: the user set COMMAND.INTX_DISABLE in the virtual config space.</summary>
    internal bool VirqDisabled => Volatile.Read(ref _virqDisabled);

    /// <summary>True while an unmask eventfd (virqfd) is registered for INTx.</summary>
    internal bool IntxUnmaskEventfdActive => _intx is { Freed: false } c && c.Unmask.IsActive;

    /// <summary>The MSI or MSI-X vectors allocated now (0 when neither is enabled).</summary>
    internal int MsiVectorsAllocated
    {
        get
        {
            MsiState? s = _msi;
            if (s is null)
            {
                return 0;
            }

            int n = 0;
            foreach (int v in s.Irq)
            {
                n += v != 0 ? 1 : 0;
            }

            return n;
        }
    }

    /// <summary>The MSI/MSI-X vector slots (0 when neither is enabled), for <see cref="MsiTrigger"/>.</summary>
    internal int MsiVectorSlots => _msi?.Ctx.Length ?? 0;

    /// <summary>The eventfd attached to MSI/MSI-X vector <paramref name="vector"/>, or null.</summary>
    internal EventFdContext? MsiTrigger(int vector) => _msi is { } s && vector < s.Ctx.Length ? s.Ctx[vector]?.Trigger : null;

    /// <summary>The INTx trigger eventfd, or null.</summary>
    internal EventFdContext? IntxTrigger => _intx is { Freed: false } c ? Volatile.Read(ref c.Trigger) : null;

    private bool Has(KernelFeature f) => Core.Kernel.Profile.Has(f);

    private InterruptController Irqs => Pdev.Machine.Interrupts;

    private bool IsIntx => Volatile.Read(ref _irqType) == VfioPciIndex.IrqIntx;

    private bool IsIrqNone => Volatile.Read(ref _irqType) == IrqNone;

    /// <summary>The interrupt locks; called from InitDev.</summary>
    private void InitIntrs(SimKernel k)
    {
        _irqlock = new KSpinLock(k, $"vfio-pci[{Dev.Name}].irqlock", s_irqlockClass);
        _virqfds = new VfioVirqfdSet(k, Dev.Name);
    }

    /// <summary>
    /// vfio_pci_set_irqs_ioctl(): picks the handler for the index and the action; an index
    /// or action without one is -ENOTTY. ERR exists only on PCI Express functions.
    /// </summary>
    internal int SetIrqsLocked(VfioIrqSetFlags flags, int index, uint start, uint count, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        VfioIrqSetFlags action = flags & VfioIrqSetFlags.ActionTypeMask;
        switch (index)
        {
            case VfioPciIndex.IrqIntx when action == VfioIrqSetFlags.ActionMask:
                return SetIntxMaskLocked(start, count, flags, data);
            case VfioPciIndex.IrqIntx when action == VfioIrqSetFlags.ActionUnmask:
                return SetIntxUnmaskLocked(start, count, flags, data);
            case VfioPciIndex.IrqIntx when action == VfioIrqSetFlags.ActionTrigger:
                return SetIntxTriggerLocked(start, count, flags, data);
            case VfioPciIndex.IrqMsi or VfioPciIndex.IrqMsix when action == VfioIrqSetFlags.ActionTrigger:
                return SetMsiTriggerLocked(index, start, count, flags, data);
            case VfioPciIndex.IrqMsi or VfioPciIndex.IrqMsix:
                return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: {(index == VfioPciIndex.IrqMsi ? "MSI" : "MSI-X")} has no MASK/UNMASK (the kernel does not export per-vector masking)");
            case VfioPciIndex.IrqErr when action == VfioIrqSetFlags.ActionTrigger && Pdev.IsPcie:
                return SetCtxTriggerSingle(ref _errTrigger, start, count, flags, data, "ERR");
            case VfioPciIndex.IrqReq when action == VfioIrqSetFlags.ActionTrigger:
                return SetCtxTriggerSingle(ref _reqTrigger, start, count, flags, data, "REQ");
            default:
                return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: index {index} has no handler for flags 0x{(uint)flags:x} (ERR and REQ take ACTION_TRIGGER only)");
        }
    }

    // ---- INTx.

    /// <summary>Warns when a context is used after it was freed (a KASAN report); true when it is still live.</summary>
    private static bool CtxLive(IrqCtx ctx) => !Warn.On(ctx.Freed, $"use-after-free: {ctx.Name} was freed when INTx was disabled, and is still being used");

    /// <summary>
    /// vfio_send_intx_eventfd(): while INTx is enabled and the user has not set
    /// virq_disabled, signal the trigger. linux-6.12 skips a missing trigger; linux-6.1
    /// signals whatever the context holds (NULL is a kernel oops).
    /// </summary>
    private void SendIntxEventfd(IrqCtx? data)
    {
        if (!IsIntx || Volatile.Read(ref _virqDisabled))
        {
            return;
        }

        if (Has(VfioPciFeatures.PersistentIntxHandler))
        {
            if (data is not null && Volatile.Read(ref data.Trigger) is { } trigger)
            {
                trigger.Signal();
            }

            return;
        }

        // The older design checks is_intx() and then dereferences the context with no lock
        // held: a preemption point here is where a racing disable can free it (race 10).
        KTask.Schedule();
        IrqCtx? ctx = _intx;
        if (ctx is null || !CtxLive(ctx))
        {
            return;
        }

        EventFdContext? t = Volatile.Read(ref ctx.Trigger);
        Bug.On(t is null, $"BUG: kernel NULL pointer dereference in eventfd_signal(): vfio_send_intx_eventfd() on {Pname} with no INTx trigger eventfd");
        t!.Signal();
    }

    /// <summary>
    /// __vfio_pci_intx_mask(): outside INTx the physical DisINTx follows the virtual bit;
    /// otherwise mask (DisINTx, or disable_irq on an exclusive line) unless already masked.
    /// Returns true when the masked state changed.
    /// </summary>
    private bool IntxMaskCore()
    {
        bool changed = false;
        _irqlock.Lock();
        try
        {
            if (!IsIntx)
            {
                if (Pci23)
                {
                    SetIntxDisable(true);
                }

                return false;
            }

            IrqCtx? ctx = _intx;
            if (Warn.OnOnce(ctx is null, $"vfio-pci {Pname}: INTx enabled without its context") || !CtxLive(ctx!))
            {
                return false;
            }

            if (!ctx!.Masked)
            {
                if (Pci23)
                {
                    SetIntxDisable(true);
                }
                else
                {
                    Irqs.DisableIntxNosync(Pdev);
                }

                ctx.Masked = true;
                changed = true;
            }
        }
        finally
        {
            _irqlock.Unlock();
        }

        return changed;
    }

    /// <summary>
    /// vfio_pci_intx_unmask_handler(): outside INTx the physical DisINTx follows the virtual
    /// bit; otherwise, when masked and virq_disabled is clear, unmask — unless the function
    /// still asserts (pci_check_and_unmask_intx fails), which returns 1: signal again.
    /// </summary>
    private int IntxUnmaskHandler(IrqCtx? data)
    {
        int ret = 0;
        _irqlock.Lock();
        try
        {
            if (!IsIntx)
            {
                if (Pci23)
                {
                    SetIntxDisable(false);
                }

                return 0;
            }

            IrqCtx? ctx = Has(VfioPciFeatures.PersistentIntxHandler) ? data : _intx;
            if (Warn.OnOnce(ctx is null, $"vfio-pci {Pname}: INTx enabled without its context") || !CtxLive(ctx!))
            {
                return 0;
            }

            if (ctx!.Masked && !Volatile.Read(ref _virqDisabled))
            {
                if (Pci23)
                {
                    ret = Pdev.CheckAndUnmaskIntx() ? 0 : 1;
                }
                else
                {
                    Irqs.EnableIntx(Pdev);
                }

                ctx.Masked = ret > 0;
            }
        }
        finally
        {
            _irqlock.Unlock();
        }

        return ret;
    }

    /// <summary>__vfio_pci_intx_unmask().</summary>
    private void IntxUnmaskCore()
    {
        IrqCtx? ctx = _intx;
        if (IntxUnmaskHandler(ctx) > 0)
        {
            SendIntxEventfd(ctx);
        }
    }

    /// <summary>
    /// vfio_intx_handler(): an exclusive line is disabled at the controller; a shared one is
    /// masked with DisINTx only when this function shows an interrupt and is not masked
    /// already. Then the trigger is signalled.
    /// </summary>
    private void IntxHandler(IrqCtx? data)
    {
        IrqCtx? ctx = Has(VfioPciFeatures.PersistentIntxHandler) ? data : _intx;
        if (ctx is null || !CtxLive(ctx))
        {
            return;
        }

        bool handled = false;
        _irqlock.Lock();
        if (!Pci23)
        {
            Irqs.DisableIntxNosync(Pdev);
            ctx.Masked = true;
            handled = true;
        }
        else if (!ctx.Masked && Pdev.CheckAndMaskIntx())
        {
            ctx.Masked = true;
            handled = true;
        }

        _irqlock.Unlock();
        if (handled)
        {
            SendIntxEventfd(ctx);
        }
    }

    /// <summary>
    /// vfio_intx_enable() of linux-6.12: the context with the trigger, masked as the user's
    /// virq_disabled says, then the handler requested for good — shared with DisINTx,
    /// exclusive otherwise (without auto-enable while masked). -EINVAL when another index is
    /// active, -ENODEV without an interrupt line.
    /// </summary>
    private int IntxEnableLocked(EventFdContext? trigger)
    {
        _igate.AssertHeld();
        if (!IsIrqNone)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: INTx cannot be enabled while {IndexName(_irqType)} is active (disable it first)");
        }

        if (Pdev.Irq == 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{SetIrqsName}: {Pname} has no INTx line routed");
        }

        var ctx = new IrqCtx($"vfio-intx({Pname})") { Trigger = trigger, Masked = _virqDisabled };
        bool noAutoEnable = false;
        if (Pci23)
        {
            SetIntxDisable(ctx.Masked);
        }
        else
        {
            noAutoEnable = ctx.Masked && Has(VfioPciFeatures.ExclusiveIntxNoAutoEnable);
        }

        _intx = ctx;
        Volatile.Write(ref _irqType, VfioPciIndex.IrqIntx);
        int ret = Irqs.RequestIntx(Pdev, ctx.Name, _ => IntxHandler(ctx), noAutoEnable);
        if (ret != 0)
        {
            Volatile.Write(ref _irqType, IrqNone);
            _intx = null;
            ctx.Freed = true;
            return ErrorReason.Fail(Errno.EBUSY, $"{SetIrqsName}: request_irq of {Pname}'s INTx line {Pdev.Irq} failed ({ret})");
        }

        if (!Pci23 && ctx.Masked && !noAutoEnable)
        {
            // Without the no-auto-enable request, mask after the fact (the v6.1 window).
            _irqlock.Lock();
            Irqs.DisableIntxNosync(Pdev);
            _irqlock.Unlock();
        }

        return 0;
    }

    /// <summary>
    /// vfio_intx_set_signal() of linux-6.12: publish the new trigger (or none), and release
    /// the old one once no handler runs and the unmask virqfd's inject work has drained.
    /// </summary>
    private void IntxSetSignalLocked(EventFdContext? trigger)
    {
        _igate.AssertHeld();
        IrqCtx ctx = _intx!;
        EventFdContext? old = Interlocked.Exchange(ref ctx.Trigger, trigger);
        if (old is not null)
        {
            Irqs.SynchronizeIntx(Pdev);
            if (Has(VfioPciFeatures.VirqfdFlushBeforeTriggerRelease))
            {
                _virqfds.FlushThread(ctx.Unmask);
            }

            old.Put();
        }
    }

    /// <summary>vfio_intx_enable() of linux-6.1: only the context (masked per virq_disabled); the handler comes with the trigger.</summary>
    private int IntxEnableOldLocked()
    {
        _igate.AssertHeld();
        if (!IsIrqNone)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: INTx cannot be enabled while {IndexName(_irqType)} is active (disable it first)");
        }

        if (Pdev.Irq == 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{SetIrqsName}: {Pname} has no INTx line routed");
        }

        var ctx = new IrqCtx($"vfio-intx({Pname})") { Masked = _virqDisabled };
        _intx = ctx;
        if (Pci23)
        {
            SetIntxDisable(ctx.Masked);
        }

        Volatile.Write(ref _irqType, VfioPciIndex.IrqIntx);
        return 0;
    }

    /// <summary>
    /// vfio_intx_set_signal() of linux-6.1: free the IRQ and put the old trigger (then clear
    /// the pointer), and for fd ≥ 0 take the new eventfd and request the IRQ again with the
    /// device as handler data; an exclusive line is then disabled again if it is masked.
    /// </summary>
    private int IntxSetSignalOldLocked(int fd)
    {
        _igate.AssertHeld();
        IrqCtx ctx = _intx!;
        if (Volatile.Read(ref ctx.Trigger) is { } old)
        {
            Irqs.FreeIntx(Pdev);
            old.Put();
            Volatile.Write(ref ctx.Trigger, null);
        }

        if (fd < 0)
        {
            return 0;
        }

        int err = EventFdCtxFdget(fd, out EventFdContext? trigger);
        if (err != 0)
        {
            return err;
        }

        Volatile.Write(ref ctx.Trigger, trigger);
        bool noAutoEnable = !Pci23 && Has(VfioPciFeatures.ExclusiveIntxNoAutoEnable);
        int ret = Irqs.RequestIntx(Pdev, ctx.Name, _ => IntxHandler(null), noAutoEnable);
        if (ret != 0)
        {
            Volatile.Write(ref ctx.Trigger, null);
            trigger!.Put();
            return ErrorReason.Fail(Errno.EBUSY, $"{SetIrqsName}: request_irq of {Pname}'s INTx line {Pdev.Irq} failed ({ret})");
        }

        _irqlock.Lock();
        if (!Pci23 && ctx.Masked)
        {
            Irqs.DisableIntxNosync(Pdev);
        }

        _irqlock.Unlock();
        return 0;
    }

    /// <summary>
    /// vfio_intx_disable(): the virqfds, the handler, the trigger and the context go; the
    /// index becomes none. linux-6.1 leaves the freed context reachable (kfree without
    /// clearing the pointer).
    /// </summary>
    private void IntxDisableLocked()
    {
        _igate.AssertHeld();
        IrqCtx? ctx = _intx;
        if (Warn.OnOnce(ctx is null, $"vfio-pci {Pname}: INTx disable without its context"))
        {
            Volatile.Write(ref _irqType, IrqNone);
            return;
        }

        _virqfds.Disable(ctx!.Unmask);
        _virqfds.Disable(ctx.Mask);
        if (Has(VfioPciFeatures.PersistentIntxHandler))
        {
            Irqs.FreeIntx(Pdev);
            Interlocked.Exchange(ref ctx.Trigger, null)?.Put();
            ctx.Freed = true;
            _intx = null;
            Volatile.Write(ref _irqType, IrqNone);
            return;
        }

        IntxSetSignalOldLocked(-1);
        Volatile.Write(ref _irqType, IrqNone);
        ctx.Freed = true;
    }

    /// <summary>
    /// vfio_pci_set_intx_trigger(): NONE with count 0 disables; otherwise start 0, count 1:
    /// EVENTFD enables (or replaces the trigger; fd &lt; 0 means none), NONE / BOOL(1)
    /// signal from user space while enabled.
    /// </summary>
    private int SetIntxTriggerLocked(uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        if (IsIntx && count == 0 && (flags & VfioIrqSetFlags.DataNone) != 0)
        {
            IntxDisableLocked();
            return 0;
        }

        if (!(IsIntx || IsIrqNone) || start != 0 || count != 1)
        {
            return ErrorReason.Fail(Errno.EINVAL, IsIntx || IsIrqNone
                ? $"{SetIrqsName}: INTx takes start 0 and count 1 (got start {start}, count {count})"
                : $"{SetIrqsName}: INTx cannot be used while {IndexName(_irqType)} is active (disable it first)");
        }

        if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
        {
            int fd = BitConverter.ToInt32(data);
            if (!Has(VfioPciFeatures.PersistentIntxHandler))
            {
                if (IsIntx)
                {
                    return IntxSetSignalOldLocked(fd);
                }

                int r = IntxEnableOldLocked();
                if (r != 0)
                {
                    return r;
                }

                r = IntxSetSignalOldLocked(fd);
                if (r != 0)
                {
                    IntxDisableLocked();
                }

                return r;
            }

            EventFdContext? trigger = null;
            if (fd >= 0)
            {
                int err = EventFdCtxFdget(fd, out trigger);
                if (err != 0)
                {
                    return err;
                }
            }

            int ret = 0;
            if (IsIntx)
            {
                IntxSetSignalLocked(trigger);
            }
            else
            {
                ret = IntxEnableLocked(trigger);
            }

            if (ret != 0)
            {
                trigger?.Put();
            }

            return ret;
        }

        if (!IsIntx)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: INTx loopback needs INTx enabled");
        }

        if ((flags & VfioIrqSetFlags.DataNone) != 0 || data[0] != 0)
        {
            SendIntxEventfd(_intx);
        }

        return 0;
    }

    /// <summary>
    /// vfio_pci_set_intx_unmask(): INTx enabled, start 0, count 1; NONE / BOOL(1) unmask;
    /// EVENTFD fd ≥ 0 registers the unmask eventfd (a virqfd: writing it unmasks), -1 drops it.
    /// </summary>
    private int SetIntxUnmaskLocked(uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        if (!IsIntx || start != 0 || count != 1)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: INTx UNMASK needs INTx enabled, start 0 and count 1 (INTx {(IsIntx ? "enabled" : "not enabled")}, start {start}, count {count})");
        }

        if ((flags & VfioIrqSetFlags.DataNone) != 0)
        {
            IntxUnmaskCore();
        }
        else if ((flags & VfioIrqSetFlags.DataBool) != 0)
        {
            if (data[0] != 0)
            {
                IntxUnmaskCore();
            }
        }
        else
        {
            IrqCtx ctx = _intx!;
            int fd = BitConverter.ToInt32(data);
            if (fd >= 0)
            {
                return EnableIntxUnmaskEventfdLocked(ctx, fd);
            }

            _virqfds.Disable(ctx.Unmask);
        }

        return 0;
    }

    /// <summary>
    /// The unmask eventfd (vfio_virqfd_enable with the unmask handler and the trigger): a
    /// method of its own so that the closures it makes are allocated only here, not on every
    /// UNMASK (the compiler hoists a closure's environment to the enclosing method's scope).
    /// </summary>
    private int EnableIntxUnmaskEventfdLocked(IrqCtx ctx, int fd)
    {
        _igate.AssertHeld();
        IrqCtx? data = Has(VfioPciFeatures.PersistentIntxHandler) ? ctx : null;
        return _virqfds.Enable(() => IntxUnmaskHandler(data) > 0, () => SendIntxEventfd(data), ctx.Unmask, fd, SetIrqsName);
    }

    /// <summary>vfio_pci_set_intx_mask(): INTx enabled, start 0, count 1; NONE / BOOL(1) mask; EVENTFD is -ENOTTY.</summary>
    private int SetIntxMaskLocked(uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        if (!IsIntx || start != 0 || count != 1)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: INTx MASK needs INTx enabled, start 0 and count 1 (INTx {(IsIntx ? "enabled" : "not enabled")}, start {start}, count {count})");
        }

        if ((flags & VfioIrqSetFlags.DataNone) != 0)
        {
            IntxMaskCore();
        }
        else if ((flags & VfioIrqSetFlags.DataBool) != 0)
        {
            if (data[0] != 0)
            {
                IntxMaskCore();
            }
        }
        else
        {
            return ErrorReason.Fail(Errno.ENOTTY, $"{SetIrqsName}: INTx MASK with an eventfd is not implemented by the kernel");
        }

        return 0;
    }

    /// <summary>
    /// vfio_basic_config_write()'s INTx-disable emulation: the user's COMMAND.INTX_DISABLE
    /// changed, so virq_disabled follows and INTx is masked or unmasked through
    /// vfio_pci_intx_mask/unmask — under igate on linux-6.12 (LockedIntxMaskingOps), without
    /// it on linux-6.1. Called after the COMMAND write, memory_lock released.
    /// </summary>
    private void EmulateIntxDisable()
    {
        bool virt = (VirtualCommand() & PciRegs.CommandIntxDisable) != 0;
        bool locked = Has(VfioPciFeatures.LockedIntxMaskingOps);
        if (virt && !Volatile.Read(ref _virqDisabled))
        {
            Volatile.Write(ref _virqDisabled, true);
            WithMaskingLock(locked, mask: true);
        }
        else if (!virt && Volatile.Read(ref _virqDisabled))
        {
            Volatile.Write(ref _virqDisabled, false);
            WithMaskingLock(locked, mask: false);
        }
    }

    private void WithMaskingLock(bool locked, bool mask)
    {
        if (locked)
        {
            _igate.Lock();
        }

        try
        {
            if (mask)
            {
                IntxMaskCore();
            }
            else
            {
                IntxUnmaskCore();
            }
        }
        finally
        {
            if (locked)
            {
                _igate.Unlock();
            }
        }
    }

    // ---- MSI and MSI-X.

    /// <summary>
    /// vfio_pci_set_msi_trigger(): NONE with count 0 disables the active index; EVENTFD
    /// enables (start+count vectors) or sets the block; NONE / BOOL signal the listed vectors
    /// that have eventfds. Another active index is -EINVAL.
    /// </summary>
    private int SetMsiTriggerLocked(int index, uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data)
    {
        _igate.AssertHeld();
        bool msix = index == VfioPciIndex.IrqMsix;
        int type = Volatile.Read(ref _irqType);
        if (type == index && count == 0 && (flags & VfioIrqSetFlags.DataNone) != 0)
        {
            MsiDisableLocked(msix);
            return 0;
        }

        if (type != index && type != IrqNone)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: {IndexName(index)} cannot be used while {IndexName(type)} is active (disable it first)");
        }

        if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
        {
            if (type == index)
            {
                return MsiSetBlockLocked(start, count, data, msix);
            }

            int ret = MsiEnableLocked((int)(start + count), msix);
            if (ret != 0)
            {
                return ret;
            }

            ret = MsiSetBlockLocked(start, count, data, msix);
            if (ret != 0)
            {
                MsiDisableLocked(msix);
            }

            return ret;
        }

        if (type != index)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: {IndexName(index)} loopback needs it enabled");
        }

        MsiState s = _msi!;
        if (!Has(VfioPciFeatures.DynamicMsix) && start + count > s.Allocated)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: vectors [{start}, {start + count}) go past the {s.Allocated} enabled");
        }

        for (uint i = start; i < start + count; i++)
        {
            if (i >= s.Ctx.Length || s.Ctx[i] is not { } ctx)
            {
                continue;
            }

            if ((flags & VfioIrqSetFlags.DataNone) != 0 || data[(int)(i - start)] != 0)
            {
                ctx.Trigger?.Signal();
            }
        }

        return 0;
    }

    /// <summary>
    /// vfio_msi_enable(): pci_alloc_irq_vectors(1, nvec) under memory_lock with memory decode
    /// on; fewer vectors than asked returns that positive count (the vectors are given back),
    /// none at all -ENOSPC. MSI records msi_qmax.
    /// </summary>
    private int MsiEnableLocked(int nvec, bool msix)
    {
        _igate.AssertHeld();
        if (!IsIrqNone)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: {IndexName(msix ? VfioPciIndex.IrqMsix : VfioPciIndex.IrqMsi)} cannot be enabled while {IndexName(_irqType)} is active");
        }

        var s = new MsiState(msix ? Pdev.MsixVectors : Math.Max(nvec, IrqCount(VfioPciIndex.IrqMsi)));
        ushort cmd = MemoryLockAndEnable();
        int ret;
        try
        {
            ret = AllocIrqVectors(s, nvec, msix);
            if (ret < nvec)
            {
                if (ret > 0)
                {
                    FreeIrqVectors(s, msix);
                }
            }
        }
        finally
        {
            MemoryUnlockAndRestore(cmd);
        }

        if (ret < nvec)
        {
            return ret > 0
                ? ret
                : ErrorReason.Fail(Errno.ENOSPC, $"{SetIrqsName}: no interrupt vectors left for {Pname}");
        }

        _msi = s;
        Volatile.Write(ref _irqType, msix ? VfioPciIndex.IrqMsix : VfioPciIndex.IrqMsi);
        if (!msix)
        {
            _msiQmax = BitOperations.Log2((uint)(nvec * 2 - 1));
        }

        return 0;
    }

    /// <summary>
    /// pci_alloc_irq_vectors(): MSI takes a power-of-two aligned block (Multiple Message
    /// Enable), MSI-X one vector per entry; as many as the controller has, up to
    /// <paramref name="nvec"/>. The function is programmed: MSI address, data and enable;
    /// MSI-X entries written masked, then enable. DisINTx is set while MSI/MSI-X is on
    /// (pci_intx_for_msi). Returns the vectors obtained, or -ENOSPC.
    /// </summary>
    private int AllocIrqVectors(MsiState s, int nvec, bool msix)
    {
        string name = $"vfio-msi{(msix ? "x" : string.Empty)}({Pname})";
        int got = 0;
        if (!msix)
        {
            int block = (int)BitOperations.RoundUpToPowerOf2((uint)nvec);
            int first = Errno.ENOSPC.Negative();
            for (; block >= 1; block >>= 1)
            {
                first = Irqs.AllocVectorBlock(name, block, v => MsiHandler(s, v - s.BlockFirst));
                if (first > 0)
                {
                    break;
                }
            }

            if (first <= 0)
            {
                return first;
            }

            // Only the vectors asked for are the function's (nvec_used): the rest of the
            // power-of-two block has no Linux IRQ, so pci_irq_vector() refuses them.
            got = Math.Min(block, nvec);
            for (int i = 0; i < got; i++)
            {
                s.Irq[i] = first + i;
            }

            s.Allocated = got;
            s.BlockFirst = first;
            s.BlockSize = block;
            ProgramMsi(first, block);
        }
        else
        {
            for (int i = 0; i < nvec; i++)
            {
                int entry = i;
                int v = Irqs.AllocVector(name, _ => MsiHandler(s, entry));
                if (v < 0)
                {
                    break;
                }

                s.Irq[i] = v;
                got++;
            }

            if (got == 0)
            {
                return Errno.ENOSPC.Negative();
            }

            s.Allocated = got;
            ushort flags = (ushort)Pdev.ReadConfig(Pdev.MsixCap + PciRegs.MsixFlags, 2);
            Pdev.WriteConfig(Pdev.MsixCap + PciRegs.MsixFlags, (uint)(flags | PciRegs.MsixFlagsEnable | PciRegs.MsixFlagsMaskAll), 2);
            for (int i = 0; i < got; i++)
            {
                WriteMsixEntry(i, s.Irq[i], masked: true);
            }

            Pdev.WriteConfig(Pdev.MsixCap + PciRegs.MsixFlags, (uint)((flags | PciRegs.MsixFlagsEnable) & ~PciRegs.MsixFlagsMaskAll), 2);
        }

        SetIntxDisable(true);
        return got;
    }

    /// <summary>pci_msix_alloc_irq_at() (dynamic MSI-X): one more vector for entry <paramref name="index"/>, written masked. The vector or -ENOSPC.</summary>
    private int AllocIrqAt(MsiState s, int index)
    {
        int v = Irqs.AllocVector($"vfio-msix({Pname})", _ => MsiHandler(s, index));
        if (v < 0)
        {
            return v;
        }

        s.Irq[index] = v;
        WriteMsixEntry(index, v, masked: true);
        return v;
    }

    /// <summary>pci_free_irq_vectors(): the function stops signalling (MSI/MSI-X enable off, entries masked), the vectors go back, DisINTx clears.</summary>
    private void FreeIrqVectors(MsiState s, bool msix)
    {
        if (msix)
        {
            ushort flags = (ushort)Pdev.ReadConfig(Pdev.MsixCap + PciRegs.MsixFlags, 2);
            for (int i = 0; i < s.Irq.Length; i++)
            {
                if (s.Irq[i] != 0)
                {
                    SetMsixEntryMask(i, true);
                }
            }

            Pdev.WriteConfig(Pdev.MsixCap + PciRegs.MsixFlags, (uint)(flags & ~(PciRegs.MsixFlagsEnable | PciRegs.MsixFlagsMaskAll)), 2);
            for (int i = 0; i < s.Irq.Length; i++)
            {
                if (s.Irq[i] != 0)
                {
                    Irqs.FreeVector(s.Irq[i]);
                    s.Irq[i] = 0;
                }
            }
        }
        else
        {
            ushort flags = (ushort)Pdev.ReadConfig(Pdev.MsiCap + PciRegs.MsiFlags, 2);
            Pdev.WriteConfig(Pdev.MsiCap + PciRegs.MsiFlags, (uint)(flags & ~(PciRegs.MsiFlagsEnable | PciRegs.MsiFlagsQsize)), 2);
            for (int v = s.BlockFirst; v < s.BlockFirst + s.BlockSize; v++)
            {
                Irqs.FreeVector(v);
            }

            Array.Clear(s.Irq);
        }

        s.Allocated = 0;
        SetIntxDisable(false);
    }

    /// <summary>Programs the MSI capability for a block of <paramref name="count"/> vectors from <paramref name="first"/> and enables it.</summary>
    private void ProgramMsi(int first, int count)
    {
        int cap = Pdev.MsiCap;
        (ulong address, uint data) = InterruptController.ComposeMsiMessage(first);
        ushort flags = (ushort)Pdev.ReadConfig(cap + PciRegs.MsiFlags, 2);
        bool is64 = (flags & PciRegs.MsiFlags64Bit) != 0;
        Pdev.WriteConfig(cap + PciRegs.MsiAddressLo, (uint)address, 4);
        if (is64)
        {
            Pdev.WriteConfig(cap + 8, (uint)(address >> 32), 4);
        }

        Pdev.WriteConfig(cap + (is64 ? 12 : 8), data, 2);
        int qsize = BitOperations.Log2((uint)count);
        flags = (ushort)((flags & ~PciRegs.MsiFlagsQsize) | (qsize << 4) | PciRegs.MsiFlagsEnable);
        Pdev.WriteConfig(cap + PciRegs.MsiFlags, flags, 2);
    }

    /// <summary>Writes MSI-X entry <paramref name="index"/> with the message of <paramref name="vector"/> (pci_write_msi_msg).</summary>
    private void WriteMsixEntry(int index, int vector, bool masked)
    {
        (ulong address, uint data) = InterruptController.ComposeMsiMessage(vector);
        (int bar, long offset) = Pdev.MsixTableLocation;
        Span<byte> entry = stackalloc byte[16];
        BitConverter.TryWriteBytes(entry, address);
        BitConverter.TryWriteBytes(entry[8..], data);
        BitConverter.TryWriteBytes(entry[12..], masked ? PciRegs.MsixEntryCtrlMaskBit : 0u);
        Pdev.BarAccess(bar, offset + (index * (long)PciRegs.MsixEntrySize), (ReadOnlySpan<byte>)entry);
    }

    private void SetMsixEntryMask(int index, bool masked)
    {
        (int bar, long offset) = Pdev.MsixTableLocation;
        Span<byte> ctrl = stackalloc byte[4];
        BitConverter.TryWriteBytes(ctrl, masked ? PciRegs.MsixEntryCtrlMaskBit : 0u);
        Pdev.BarAccess(bar, offset + (index * (long)PciRegs.MsixEntrySize) + 12, (ReadOnlySpan<byte>)ctrl);
    }

    /// <summary>
    /// vfio_msihandler(): the requested trigger of entry <paramref name="index"/> (bound when
    /// its vector was allocated) is signalled; an entry without one is unhandled.
    /// </summary>
    private static void MsiHandler(MsiState s, int index)
    {
        if ((uint)index < (uint)s.Action.Length && Volatile.Read(ref s.Action[index]) is { } trigger)
        {
            trigger.Signal();
        }
    }

    /// <summary>
    /// vfio_msi_set_vector_signal(): drop the vector's eventfd (free_irq; the vector stays
    /// allocated), then for fd ≥ 0 make sure the vector exists (dynamic MSI-X allocates it),
    /// take the eventfd, rewrite the cached MSI-X message and request the handler.
    /// </summary>
    private int MsiSetVectorSignalLocked(int vector, int fd, bool msix)
    {
        _igate.AssertHeld();
        MsiState s = _msi!;
        bool dyn = Has(VfioPciFeatures.DynamicMsix);
        if (!dyn && vector >= s.Allocated)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: vector {vector} is past the {s.Allocated} enabled");
        }

        if (vector >= s.Ctx.Length)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: vector {vector} does not exist");
        }

        if (s.Ctx[vector] is { } old)
        {
            ushort c = MemoryLockAndEnable();
            try
            {
                FreeIrq(s, vector, msix);
            }
            finally
            {
                MemoryUnlockAndRestore(c);
            }

            old.Trigger?.Put();
            old.Trigger = null;
            old.Freed = true;
            s.Ctx[vector] = null;
        }

        if (fd < 0)
        {
            return 0;
        }

        if (s.Irq[vector] == 0)
        {
            if (!msix || !dyn)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: vector {vector} was not allocated when {IndexName(msix ? VfioPciIndex.IrqMsix : VfioPciIndex.IrqMsi)} was enabled");
            }

            ushort c = MemoryLockAndEnable();
            int v;
            try
            {
                v = AllocIrqAt(s, vector);
            }
            finally
            {
                MemoryUnlockAndRestore(c);
            }

            if (v < 0)
            {
                return ErrorReason.Fail(Errno.ENOSPC, $"{SetIrqsName}: no interrupt vector left for MSI-X entry {vector} of {Pname}");
            }
        }

        int err = EventFdCtxFdget(fd, out EventFdContext? trigger);
        if (err != 0)
        {
            return err;
        }

        var ctx = new IrqCtx($"vfio-msi{(msix ? "x" : string.Empty)}[{vector}]({Pname})") { Trigger = trigger };
        ushort cmd = MemoryLockAndEnable();
        try
        {
            if (msix)
            {
                WriteMsixEntry(vector, s.Irq[vector], masked: true);
            }

            // request_irq(): the handler with the trigger as its data, then the entry unmasked.
            Volatile.Write(ref s.Action[vector], trigger);
            if (msix)
            {
                SetMsixEntryMask(vector, false);
            }
        }
        finally
        {
            MemoryUnlockAndRestore(cmd);
        }

        s.Ctx[vector] = ctx;
        return 0;
    }

    /// <summary>free_irq() of an MSI/MSI-X vector: the entry masked, the handler gone once it no longer runs.</summary>
    private void FreeIrq(MsiState s, int vector, bool msix)
    {
        if (msix)
        {
            SetMsixEntryMask(vector, true);
        }

        Volatile.Write(ref s.Action[vector], null);
        Irqs.SynchronizeVector(s.Irq[vector]);
    }

    /// <summary>
    /// vfio_msi_set_block(): each vector in [start, start+count) gets its fd (-1: none, as
    /// also without a payload); on a failure the vectors this call already set lose their
    /// eventfds. linux-6.1 refuses a block past the vectors enabled.
    /// </summary>
    private int MsiSetBlockLocked(uint start, uint count, ReadOnlySpan<byte> fds, bool msix)
    {
        _igate.AssertHeld();
        MsiState s = _msi!;
        if (!Has(VfioPciFeatures.DynamicMsix) && (start >= s.Allocated || start + count > s.Allocated))
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: vectors [{start}, {start + count}) are not all among the {s.Allocated} enabled (linux-6.1 cannot add vectors while {IndexName(msix ? VfioPciIndex.IrqMsix : VfioPciIndex.IrqMsi)} is on)");
        }

        int ret = 0;
        uint j = start;
        for (uint i = 0; i < count && ret == 0; i++, j++)
        {
            int fd = fds.Length >= 4 * (int)(i + 1) ? BitConverter.ToInt32(fds[(int)(4 * i)..]) : -1;
            ret = MsiSetVectorSignalLocked((int)j, fd, msix);
        }

        if (ret != 0)
        {
            for (uint i = start; i < j; i++)
            {
                MsiSetVectorSignalLocked((int)i, -1, msix);
            }
        }

        return ret;
    }

    /// <summary>vfio_msi_disable(): every vector's eventfd goes, the vectors are freed, the index becomes none.</summary>
    private void MsiDisableLocked(bool msix)
    {
        _igate.AssertHeld();
        MsiState s = _msi!;
        for (int i = 0; i < s.Ctx.Length; i++)
        {
            if (s.Ctx[i] is { } ctx)
            {
                _virqfds.Disable(ctx.Unmask);
                _virqfds.Disable(ctx.Mask);
                MsiSetVectorSignalLocked(i, -1, msix);
            }
        }

        ushort cmd = MemoryLockAndEnable();
        try
        {
            FreeIrqVectors(s, msix);
        }
        finally
        {
            MemoryUnlockAndRestore(cmd);
        }

        if (NoIntx)
        {
            SetIntxDisable(true);
        }

        _msi = null;
        Volatile.Write(ref _irqType, IrqNone);
    }

    /// <summary>
    /// vfio_pci_core_disable()'s interrupt part: whatever index is active is disabled (as
    /// SET_IRQS NONE|TRIGGER with count 0 would), and virq_disabled clears.
    /// </summary>
    private void DisableIrqsForClose()
    {
        _igate.Lock();
        try
        {
            int type = Volatile.Read(ref _irqType);
            if (type == VfioPciIndex.IrqIntx)
            {
                IntxDisableLocked();
            }
            else if (type is VfioPciIndex.IrqMsi or VfioPciIndex.IrqMsix)
            {
                MsiDisableLocked(type == VfioPciIndex.IrqMsix);
            }

            Volatile.Write(ref _virqDisabled, false);
        }
        finally
        {
            _igate.Unlock();
        }
    }

    private static string IndexName(int index) => index switch
    {
        VfioPciIndex.IrqIntx => "INTx",
        VfioPciIndex.IrqMsi => "MSI",
        VfioPciIndex.IrqMsix => "MSI-X",
        VfioPciIndex.IrqErr => "ERR",
        VfioPciIndex.IrqReq => "REQ",
        _ => "no index",
    };

    // ---- ERR and REQ.

    /// <summary>
    /// vfio_pci_set_err_trigger() / vfio_pci_set_req_trigger(), which differ only in the
    /// eventfd they set: start 0 and count 0 or 1, then vfio_pci_set_ctx_trigger_single():
    /// DATA_NONE signals (count 1) or drops (count 0) a registered eventfd — with none
    /// registered it is -EINVAL; DATA_BOOL(1) signals; DATA_EVENTFD installs fd ≥ 0
    /// (replacing the old one), -1 removes; another negative fd changes nothing — accepted
    /// on linux-6.1, -EINVAL on linux-6.12 (ErrReqNegativeFdIsEinval).
    /// </summary>
    private int SetCtxTriggerSingle(ref EventFdContext? ctx, uint start, uint count, VfioIrqSetFlags flags, ReadOnlySpan<byte> data, string what)
    {
        _igate.AssertHeld();
        if (start != 0 || count > 1)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: {what} takes start 0 and count 0 or 1 (got start {start}, count {count})");
        }

        if ((flags & VfioIrqSetFlags.DataNone) != 0)
        {
            if (ctx is not null)
            {
                if (count != 0)
                {
                    ctx.Signal();
                }
                else
                {
                    ctx.Put();
                    ctx = null;
                }

                return 0;
            }

            return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_NONE on {what} with no eventfd registered");
        }

        if ((flags & VfioIrqSetFlags.DataBool) != 0)
        {
            if (count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_BOOL on {what} needs count 1");
            }

            if (data[0] != 0 && ctx is not null)
            {
                ctx.Signal();
            }

            return 0;
        }

        if ((flags & VfioIrqSetFlags.DataEventfd) != 0)
        {
            if (count == 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: DATA_EVENTFD on {what} needs count 1");
            }

            int fd = BitConverter.ToInt32(data);
            if (fd == -1)
            {
                ctx?.Put();
                ctx = null;
            }
            else if (fd >= 0)
            {
                int err = EventFdCtxFdget(fd, out EventFdContext? efd);
                if (err != 0)
                {
                    return err;
                }

                ctx?.Put();
                ctx = efd;
            }
            else if (Has(VfioPciFeatures.ErrReqNegativeFdIsEinval))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: fd {fd} on {what} is neither an fd nor -1");
            }

            return 0;
        }

        return ErrorReason.Fail(Errno.EINVAL, $"{SetIrqsName}: no data type");
    }

    /// <summary>eventfd_ctx_fdget() for SET_IRQS.</summary>
    private static int EventFdCtxFdget(int fd, out EventFdContext? ctx) => EventFdContext.Fdget(fd, SetIrqsName, out ctx);

    /// <summary>
    /// vfio_pci_core_close_device()'s release of the ERR and REQ eventfds: put and cleared
    /// under igate (v5.9+). The design variant <see cref="VfioDesign.ErrReqRelease"/> brings
    /// back the two earlier versions: cleared without igate (racing request()), or put and
    /// left set (a later signal or close uses the freed eventfd).
    /// </summary>
    private void ReleaseErrReqTriggers()
    {
        VfioErrReqRelease how = Core.Design.ErrReqRelease;
        bool locked = how == VfioErrReqRelease.PutAndClearUnderIgate;
        if (locked)
        {
            _igate.Lock();
        }

        try
        {
            _errTrigger?.Put();
            _reqTrigger?.Put();
            if (how != VfioErrReqRelease.PutWithoutClear)
            {
                _errTrigger = null;
                _reqTrigger = null;
            }
        }
        finally
        {
            if (locked)
            {
                _igate.Unlock();
            }
        }
    }

    /// <summary>vfio_pci_core_aer_err_detected(): the AER core reports an error on the function; the ERR eventfd is signalled.</summary>
    public void AerErrorDetected()
    {
        _igate.Lock();
        try
        {
            _errTrigger?.Signal();
        }
        finally
        {
            _igate.Unlock();
        }
    }

    /// <summary>struct vfio_pci_irq_ctx: one interrupt's trigger, virqfds and INTx masked state.</summary>
    private sealed class IrqCtx(string name)
    {
        public readonly VfioVirqfdSlot Unmask = new();
        public readonly VfioVirqfdSlot Mask = new();
        public EventFdContext? Trigger;

        public string Name { get; } = name;

        // irqlock.
        public bool Masked { get; set; }

        // kfree()d: a later use is a use-after-free.
        public bool Freed { get; set; }
    }

    /// <summary>The MSI/MSI-X state of one enable: contexts, controller vectors, requested triggers.</summary>
    private sealed class MsiState(int entries)
    {
        public readonly IrqCtx?[] Ctx = new IrqCtx?[entries];
        public readonly int[] Irq = new int[entries];
        public readonly EventFdContext?[] Action = new EventFdContext?[entries];

        public int Allocated { get; set; }

        public int BlockFirst { get; set; }

        public int BlockSize { get; set; }
    }
}
