// Models VFIO_DEVICE_GET_PCI_HOT_RESET_INFO of drivers/vfio/pci/vfio_pci_core.c (v6.12):
// vfio_pci_ioctl_get_pci_hot_reset_info with vfio_pci_count_devs / vfio_pci_fill_devs over
// the bus the device sits on, for devices opened through their group (the cdev path and
// its DEV_ID flags are not built: the simulated kernels have no iommufd). The simulated
// machine has no hotplug slots, so pci_probe_reset_slot() always fails and the bus decides.
// VFIO_DEVICE_PCI_HOT_RESET itself is not built (Ioctl.cs answers ENOTTY).
//
// Order: copy in the 12-byte header (EFAULT, argsz < 12 EINVAL); neither a slot nor a bus
// reset possible → ENODEV; count every function on the bus and below; a buffer too small
// for them → ENOSPC with count set and the header copied back; otherwise fill the entries
// under dev_set->lock (an affected function without an IOMMU group → EPERM) and copy the
// entries, then the header, back.
//
// Locks: dev_set->lock (VfioDeviceSet.Lock) around the fill only, as the kernel does.

using System.Runtime.InteropServices;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    private const string HotResetInfoIoctl = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";

    /// <summary>vfio_pci_ioctl_get_pci_hot_reset_info() for a group-opened device.</summary>
    private long GetPciHotResetInfo(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioPciHotResetInfo.MinSz, out VfioPciHotResetInfo hdr, HotResetInfoIoctl);
        if (err != 0)
        {
            return err;
        }

        hdr.Flags = 0;

        // pci_probe_reset_slot() fails (no hotplug slots here), so the bus must be resettable.
        if (Pdev.OnBus is not { } bus || ProbeResetBus(bus) != 0)
        {
            return ErrorReason.Fail(Errno.ENODEV, $"{HotResetInfoIoctl}: {Pname} can be reset neither by slot nor by bus ({(Pdev.OnBus is { IsRoot: true } ? "it is on a root bus" : "a function on its bus forbids bus resets")})");
        }

        // vfio_pci_count_devs over the bus walk.
        int count = bus.AllDevicesBelow().Count();

        if (Warn.On(Core.Kernel, count == 0, $"{HotResetInfoIoctl}: no function on the bus of {Pname}"))
        {
            return Errno.ERANGE.Negative();
        }

        uint capacity = (hdr.Argsz - VfioPciHotResetInfo.MinSz) / (uint)VfioArg.SizeOf<VfioPciDependentDevice>();
        if ((uint)count > capacity)
        {
            hdr.Count = (uint)count;
            return VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0
                ? ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}")
                : ErrorReason.Fail(Errno.ENOSPC, $"{HotResetInfoIoctl}: {count} functions are affected but argsz {hdr.Argsz} holds {capacity} entries");
        }

        var devices = new VfioPciDependentDevice[count];
        int filled;
        KMutex setLock = DevSet!.Lock;
        setLock.Lock();
        try
        {
            filled = FillDependentDevicesLocked(bus, devices, out string? ungrouped);
            if (filled < 0)
            {
                // v6.1 still copied the header back (flags cleared, the caller's count).
                if (!Core.Kernel.Profile.Has(VfioPciFeatures.HotResetInfoFailedFillWritesNothing)
                    && VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0)
                {
                    return ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}");
                }

                return filled == Errno.EPERM.Negative()
                    ? ErrorReason.Fail(Errno.EPERM, $"{HotResetInfoIoctl}: {ungrouped} on the bus of {Pname} has no IOMMU group, so the bus cannot be reset safely")
                    : ErrorReason.Fail((Errno)(-filled), $"{HotResetInfoIoctl}: the functions below the bus of {Pname} changed while they were listed");
            }
        }
        finally
        {
            setLock.Unlock();
        }

        ReadOnlySpan<byte> entries = MemoryMarshal.AsBytes(devices.AsSpan(0, filled));
        if (UserMemory.CopyToUser(arg + VfioPciHotResetInfo.MinSz, entries) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write {filled} entries to 0x{arg + VfioPciHotResetInfo.MinSz:x}");
        }

        hdr.Count = (uint)filled;
        return VfioArg.CopyOut(arg, hdr, VfioPciHotResetInfo.MinSz) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{HotResetInfoIoctl}: cannot write the header to 0x{arg:x}")
            : 0;
    }

    /// <summary>
    /// vfio_pci_fill_devs() over every function on <paramref name="bus"/> and below: group id,
    /// segment, bus number, devfn. Returns the entries filled, or -EPERM with the first
    /// function that has no IOMMU group.
    /// </summary>
    private int FillDependentDevicesLocked(PciBusSegment bus, VfioPciDependentDevice[] devices, out string? ungrouped)
    {
        DevSet!.Lock.AssertHeld();
        ungrouped = null;
        int n = 0;
        foreach (PciDevice d in bus.AllDevicesBelow())
        {
            // The bus walk found more functions than the count did: the topology changed.
            if (n == devices.Length)
            {
                return Errno.EAGAIN.Negative();
            }

            if (d.IommuGroup is not { } group)
            {
                ungrouped = d.Name;
                return Errno.EPERM.Negative();
            }

            devices[n++] = new VfioPciDependentDevice
            {
                GroupIdOrDevid = (uint)group.Id,
                Segment = (ushort)d.Domain,
                Bus = (byte)d.BusNumber,
                Devfn = (byte)d.DevFn,
            };
        }

        return n;
    }
}
