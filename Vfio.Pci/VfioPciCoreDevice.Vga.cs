// Models the VGA region of vfio-pci (v6.12): vfio_pci_vga_rw() of vfio_pci_rdwr.c, the VGA
// cases of vfio_pci_core.c (vfio_pci_vga_init / uninit with the arbiter client and its
// set_decode, has_vga at enable, GET_REGION_INFO index 8), with CONFIG_VFIO_PCI_VGA=y as in
// Debian's kernels. A VGA-class function (class 0x0300xx) gets the region unless vfio-pci's
// disable_vga is set: 0xc0000 bytes, READ|WRITE, never mmap; only the legacy ranges answer,
// at their own addresses as offsets — ports 0x3b0–0x3bb and 0x3c0–0x3df, memory
// 0xa0000–0xbffff — each access clamped to its range, made under vga_get_interruptible /
// vga_put (Vfio.Platform/Pci/VgaArbiter.cs) and not gated by memory decode (legacy VGA is
// no BAR); any other offset is EINVAL. v6.1 is the same.
//
// Lock rule: none of vfio-pci's own; the arbiter's vga_lock is taken inside vga_get/put.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    /// <summary>The VGA region's size: up to the end of the legacy memory window.</summary>
    internal const long VgaRegionSize = 0xc0000;

    // vdev->has_vga (decided at enable, under dev_set->lock).
    private bool _hasVga;

    /// <summary>vdev-&gt;has_vga: the device has a VGA region.</summary>
    public bool HasVga => Volatile.Read(ref _hasVga);

    private bool VgaDisabled => Driver.Options.DisableVga;

    /// <summary>vfio_pci_vga_init() at registration: a VGA function becomes an arbiter client that says what it decodes.</summary>
    private void VgaInit()
    {
        if (!Pdev.IsVga)
        {
            return;
        }

        VgaArbiter arb = Pdev.Machine.Vgaarb;
        arb.ClientRegister(Pdev, SetDecode);
        arb.SetLegacyDecoding(Pdev, SetDecode(Pdev, false));
    }

    /// <summary>vfio_pci_vga_uninit() at unregistration: the client goes and the function is said to decode everything again.</summary>
    private void VgaUninit()
    {
        if (!Pdev.IsVga)
        {
            return;
        }

        VgaArbiter arb = Pdev.Machine.Vgaarb;
        arb.ClientRegister(Pdev, null);
        arb.SetLegacyDecoding(Pdev, VgaResource.LegacyIo | VgaResource.LegacyMem | VgaResource.NormalIo | VgaResource.NormalMem);
    }

    /// <summary>
    /// vfio_pci_set_decode(): everything when it is the only VGA function, when vfio-pci's VGA
    /// support is on, or on a root bus; otherwise the normal resources, plus the legacy ones
    /// when another VGA function of the domain (not on a root bus) sits on this function's bus
    /// or below it — the bridges that would route VGA to it route it there too.
    /// </summary>
    private VgaResource SetDecode(PciDevice pdev, bool singleVga)
    {
        const VgaResource all = VgaResource.LegacyIo | VgaResource.LegacyMem | VgaResource.NormalIo | VgaResource.NormalMem;
        if (singleVga || !VgaDisabled || pdev.OnBus is not { IsRoot: false } bus)
        {
            return all;
        }

        // pci_bus_max_busnr(): the highest bus number on or below this bus.
        int maxBus = bus.Number;
        foreach (PciDevice d in bus.AllDevicesBelow())
        {
            maxBus = Math.Max(maxBus, d.BusNumber);
        }

        VgaResource decodes = VgaResource.NormalIo | VgaResource.NormalMem;
        foreach (PciDevice other in Pdev.Machine.Pci.Devices.OfType<PciDevice>())
        {
            if (ReferenceEquals(other, pdev) || !other.IsVga || other.Domain != pdev.Domain || other.OnBus is not { IsRoot: false })
            {
                continue;
            }

            if (other.BusNumber >= bus.Number && other.BusNumber <= maxBus)
            {
                return decodes | VgaResource.LegacyMask;
            }
        }

        return decodes;
    }

    /// <summary>The has_vga decision of vfio_pci_core_enable().</summary>
    private void EnableVga() => Volatile.Write(ref _hasVga, !VgaDisabled && Pdev.IsVga);

    /// <summary>
    /// vfio_pci_vga_rw(): no VGA region, or an offset past 0xbffff or outside the legacy
    /// ranges, is -EINVAL; the count is clamped to the range; the access holds the arbiter's
    /// lock on the range's resource.
    /// </summary>
    private long VgaRw(ulong buf, long count, ref long pos, bool write)
    {
        string op = write ? "write" : "read";
        long off = pos & VfioPciIndex.OffsetMask;
        if (!HasVga)
        {
            return Pdev.IsVga
                ? ErrorReason.Fail(Errno.EINVAL, $"{op}: {Pname} has no VGA region (vfio-pci's disable_vga is set)")
                : ErrorReason.Fail(Errno.EINVAL, $"{op}: {Pname} has no VGA region");
        }

        if (off > 0xbffff)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{op}: offset 0x{off:x} is past the VGA region (0xc0000 bytes)");
        }

        long rangeStart, rangeEnd;
        bool port;
        VgaResource rsrc;
        if (off >= PhysMem.LegacyVgaStart)
        {
            (rangeStart, rangeEnd, port, rsrc) = (PhysMem.LegacyVgaStart, PhysMem.LegacyVgaEnd, false, VgaResource.LegacyMem);
        }
        else if (off is >= 0x3b0 and < 0x3bc)
        {
            (rangeStart, rangeEnd, port, rsrc) = (0x3b0, 0x3bc, true, VgaResource.LegacyIo);
        }
        else if (off is >= 0x3c0 and < 0x3e0)
        {
            (rangeStart, rangeEnd, port, rsrc) = (0x3c0, 0x3e0, true, VgaResource.LegacyIo);
        }
        else
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{op}: offset 0x{off:x} of the VGA region is none of the legacy ranges (ports 0x3b0-0x3bb, 0x3c0-0x3df, memory 0xa0000-0xbffff)");
        }

        count = Math.Min(count, rangeEnd - off);
        VgaArbiter arb = Pdev.Machine.Vgaarb;
        int ret = arb.Get(Pdev, rsrc, interruptible: true);
        if (ret != 0)
        {
            return ret;
        }

        long done;
        try
        {
            int maxWidth = Core.Kernel.Profile.Has(VfioPciFeatures.BarRdwrQwordAccess) ? 8 : 4;
            done = DoIoRw(testMem: false, port, rangeStart, buf, off - rangeStart, count, 0, 0, write, maxWidth);
        }
        finally
        {
            arb.Put(Pdev, rsrc);
        }

        if (done >= 0)
        {
            pos += done;
        }

        return done;
    }
}
