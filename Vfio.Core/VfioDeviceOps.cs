// Models struct vfio_device_ops (include/linux/vfio.h, v6.12): what a VFIO bus driver
// (vfio-pci, an mdev vendor driver) gives the core. A NULL op in the kernel is an op the
// driver does not override here; the core reads VfioDeviceOps.Provides to apply the
// kernel's default for a missing op (read/write/mmap/ioctl -EINVAL, match by name, no
// request, no dma_unmap registration).

using System.Reflection;
using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Core;

/// <summary>Which optional operations a driver implements (the non-NULL members of vfio_device_ops).</summary>
[Flags]
public enum VfioOps
{
    None = 0,
    Init = 1 << 0,
    Release = 1 << 1,
    OpenDevice = 1 << 2,
    CloseDevice = 1 << 3,
    Read = 1 << 4,
    Write = 1 << 5,
    Ioctl = 1 << 6,
    Mmap = 1 << 7,
    Request = 1 << 8,
    Match = 1 << 9,
    DmaUnmap = 1 << 10,
    DeviceFeature = 1 << 11,
}

/// <summary>vfio_device_ops: a VFIO bus driver's callbacks.</summary>
public interface IVfioDeviceOps
{
    /// <summary>ops-&gt;name.</summary>
    string Name { get; }

    /// <summary>The operations this driver implements; the rest take the kernel's NULL-op default.</summary>
    VfioOps Provides { get; }

    /// <summary>-&gt;init(): driver set-up inside vfio_alloc_device; 0 or -errno.</summary>
    int Init(VfioDevice device);

    /// <summary>-&gt;release(): the last vfio_put_device.</summary>
    void Release(VfioDevice device);

    /// <summary>-&gt;open_device(): the first open, under the device set's lock.</summary>
    int OpenDevice(VfioDevice device);

    /// <summary>-&gt;close_device(): the last close, under the device set's lock.</summary>
    void CloseDevice(VfioDevice device);

    /// <summary>-&gt;read() at the file position.</summary>
    long Read(VfioDevice device, ulong buf, long count, ref long pos);

    /// <summary>-&gt;write() at the file position.</summary>
    long Write(VfioDevice device, ulong buf, long count, ref long pos);

    /// <summary>-&gt;ioctl() for every command the core does not handle itself.</summary>
    long Ioctl(VfioDevice device, uint cmd, ulong arg);

    /// <summary>-&gt;mmap().</summary>
    int Mmap(VfioDevice device, Vma vma);

    /// <summary>-&gt;request(count): the core asks the driver to get user space to release the device (unregister is waiting).</summary>
    void Request(VfioDevice device, uint count);

    /// <summary>-&gt;match(buf): 0 no, &gt;0 yes, &lt;0 abort the lookup with that errno.</summary>
    int Match(VfioDevice device, string buf);

    /// <summary>-&gt;dma_unmap(iova, length): an IOVA range the device may have pinned is being unmapped.</summary>
    void DmaUnmap(VfioDevice device, ulong iova, ulong length);

    /// <summary>-&gt;device_feature(flags, arg, argsz) for features the core does not handle.</summary>
    int DeviceFeature(VfioDevice device, uint flags, ulong arg, ulong argsz);
}

/// <summary>
/// A base for drivers: override the operations the driver has. <see cref="Provides"/> is
/// computed once from which members the concrete type overrides, so a driver reads like
/// its kernel ops table.
/// </summary>
public abstract class VfioDeviceOps : IVfioDeviceOps
{
    private VfioOps? _provides;

    /// <inheritdoc/>
    public abstract string Name { get; }

    /// <inheritdoc/>
    public virtual VfioOps Provides => _provides ??= Discover(GetType());

    /// <inheritdoc/>
    public virtual int Init(VfioDevice device) => 0;

    /// <inheritdoc/>
    public virtual void Release(VfioDevice device)
    {
    }

    /// <inheritdoc/>
    public virtual int OpenDevice(VfioDevice device) => 0;

    /// <inheritdoc/>
    public virtual void CloseDevice(VfioDevice device)
    {
    }

    /// <inheritdoc/>
    public virtual long Read(VfioDevice device, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual long Write(VfioDevice device, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual long Ioctl(VfioDevice device, uint cmd, ulong arg) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual int Mmap(VfioDevice device, Vma vma) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual void Request(VfioDevice device, uint count)
    {
    }

    /// <inheritdoc/>
    public virtual int Match(VfioDevice device, string buf) => string.Equals(device.Dev.Name, buf, StringComparison.Ordinal) ? 1 : 0;

    /// <inheritdoc/>
    public virtual void DmaUnmap(VfioDevice device, ulong iova, ulong length)
    {
    }

    /// <inheritdoc/>
    public virtual int DeviceFeature(VfioDevice device, uint flags, ulong arg, ulong argsz) => Errno.EINVAL.Negative();

    private static VfioOps Discover(Type type)
    {
        VfioOps ops = VfioOps.None;
        foreach (VfioOps op in Enum.GetValues<VfioOps>())
        {
            if (op == VfioOps.None)
            {
                continue;
            }

            MethodInfo? m = type.GetMethod(op.ToString(), BindingFlags.Public | BindingFlags.Instance);
            if (m is not null && m.DeclaringType != typeof(VfioDeviceOps))
            {
                ops |= op;
            }
        }

        return ops;
    }
}
