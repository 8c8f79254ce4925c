// Shared helpers of the type1 dirty-tracking, emulated-pin and replay tests: setting up the
// edu device as an emulated-IOMMU (mdev-like) device, group ioctls from any process, the
// observable state of a container (to assert that a rejected call changed nothing) and
// dirty-bitmap reads.

using System.Runtime.InteropServices;
using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Iommu;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Tests.Core;

namespace Vfio.Tests.Type1;

/// <summary>What a rejected call must leave as it was.</summary>
internal readonly record struct Type1State(string Mappings, uint DmaAvail, long LockedVm, long PinnedPages, bool Tracking, int Domains);

internal static class Type1Kit
{
    public const ulong P = Type1Rig.Page;
    public const int R = (int)IommuProt.Read;
    public const int W = (int)IommuProt.Write;
    public const int RW = R | W;

    /// <summary>
    /// Devices probed from now on register as emulated-IOMMU devices with the returned pinning
    /// ops (or, without <paramref name="withDmaUnmap"/>, the default test ops). An
    /// emulated-IOMMU vfio device (an mdev) has no IOMMU group of its own, and
    /// vfio_register_emulated_iommu_dev() gives it a software group (-EBUSY for a device that
    /// already has one), so <paramref name="device"/> is first unbound and taken out of its
    /// IOMMU group. Bind it afterwards.
    /// </summary>
    public static PinningTestDevice EmulatedNext(this Type1Rig rig, bool withDmaUnmap = true, string device = VfioRig.Edu)
    {
        PciDevice dev = rig.Core.Dev(device);
        rig.Core.Unbind(device);
        rig.Machine.Iommu!.GroupRemoveDevice(dev);
        Assert.That(dev.IommuGroup, Is.Null);
        var ops = new PinningTestDevice();
        rig.Core.Driver.Emulated = true;
        rig.Core.Driver.CustomOps = withDmaUnmap ? ops : null;
        return ops;
    }

    /// <summary>
    /// Declares the lockdep report every dma_unmap notification that makes a driver unpin
    /// produces. It is the kernel's own lock order, modelled faithfully: vfio_notify_dma_unmap()
    /// takes device_list_lock while holding iommu->lock (as register_device does), then the
    /// driver's dma_unmap calls vfio_unpin_pages(), which takes iommu->lock under
    /// device_list_lock. Two concurrent UNMAPs needing notification could deadlock on it.
    /// </summary>
    public static void ExpectDmaUnmapLockInversion(this Type1Rig rig)
        => rig.Kernel.ExpectWarning("circular locking dependency");

    /// <summary>Devices probed from now on are plain IOMMU-backed vfio devices with the default test ops.</summary>
    public static void RealNext(this Type1Rig rig)
    {
        rig.Core.Driver.Emulated = false;
        rig.Core.Driver.CustomOps = null;
    }

    /// <summary>The edu vfio_device (to pin through).</summary>
    public static VfioDevice Edu(this Type1Rig rig) => rig.Core.VDev(VfioRig.Edu);

    public static long SetContainer(SimProcess p, int groupFd, int containerFd)
    {
        int fd = containerFd;
        return p.Ioctl(groupFd, VfioIoctl.GroupSetContainer, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref fd, 1)));
    }

    /// <summary>Binds the 02:00.0/02:00.1 pair (iommu group 4) to vfio-test as plain devices and opens its group fd.</summary>
    public static int OpenPairGroup(this Type1Rig rig, bool noSnoopControl = false)
    {
        rig.RealNext();
        rig.Core.Bind(VfioRig.PairF0);
        rig.Core.Bind(VfioRig.PairF1);
        rig.Core.Dev(VfioRig.PairF0).IommuGroup!.NoSnoopControl = noSnoopControl;
        int g = rig.Core.OpenGroup(VfioRig.PairF0);
        Assert.That(g, Is.GreaterThanOrEqualTo(0));
        return g;
    }

    public static Type1State State(this Type1Rig rig, int c, SimProcess? owner = null, SimProcess? fdOwner = null)
    {
        var i = rig.Iommu(c, fdOwner);
        return new Type1State(string.Join("; ", i.Mappings), i.DmaAvail, (owner ?? rig.User).Mm.LockedVm, rig.Memory.PinnedPages, i.DirtyTracking, i.Domains.Count);
    }

    /// <summary>Asserts the call returned <paramref name="errno"/> and left the container and accounting as they were.</summary>
    public static void AssertRejected(this Type1Rig rig, int c, long ret, Errno errno, Type1State before, SimProcess? owner = null, SimProcess? fdOwner = null)
    {
        Assert.That(ret, Is.EqualTo(errno.Negative()), ErrorReason.Current);
        Assert.That(rig.State(c, owner, fdOwner), Is.EqualTo(before));
        rig.AssertInvariants(c, fdOwner);
    }

    /// <summary>Zeroes the user bitmap, runs GET_BITMAP over [iova, +size) at PAGE_SIZE granularity and returns its words.</summary>
    public static ulong[] Dirty(this Type1Rig rig, int c, ulong iova, ulong size, ulong bitmapVa)
    {
        int words = (int)(((size / P) + 63) / 64);
        Assert.That(rig.User.Mm.WriteUser(bitmapVa, new byte[words * 8]), Is.Zero);
        Assert.That(rig.GetBitmap(c, iova, size, P, bitmapVa, (ulong)words * 8), Is.Zero, ErrorReason.Current);
        return rig.ReadWords(bitmapVa, words);
    }

    /// <summary>vfio_dma_rw write of <paramref name="bytes"/> bytes at <paramref name="iova"/> by the edu device (from a kernel thread).</summary>
    public static void DeviceWrite(this Type1Rig rig, ulong iova, ulong bytes)
    {
        byte[] data = new byte[bytes];
        Array.Fill(data, (byte)0x5a);
        Assert.That(rig.Edu().DmaRw(iova, data, write: true), Is.Zero, ErrorReason.Current);
    }

    /// <summary>Opens the edu device as an emulated-IOMMU device in a TYPE1v2 container (no IOMMU domain).</summary>
    public static (int Container, int Group, int Device, PinningTestDevice Ops) OpenEmulatedEdu(this Type1Rig rig, uint type = VfioExtension.Type1v2)
    {
        PinningTestDevice ops = rig.EmulatedNext();
        (int c, int g, int d) = rig.OpenEdu(type);
        Assert.That(rig.Iommu(c).Domains, Is.Empty);
        Assert.That(rig.Iommu(c).EmulatedGroupCount, Is.EqualTo(1));
        return (c, g, d, ops);
    }
}
