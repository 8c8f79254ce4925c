// Models struct parent_ops of include/linux/mdev.h as merged in v4.10 (the 2016 series
// "Add Mediated device support"): the vendor's callbacks, called by the mdev core (create,
// remove) and by the vfio_mdev bridge (open, release, read, write, ioctl, mmap).

using Vfio.Core;
using Vfio.Kernel;
using Vfio.Platform.Mm;

namespace Vfio.Mdev.Design2016;

/// <summary>struct parent_ops (v4.10): what a vendor registers with <see cref="Mdev2016Core.RegisterDevice"/>.</summary>
public interface IMdevParentOps
{
    /// <summary>-&gt;supported_type_groups: the types the parent offers (mandatory).</summary>
    IReadOnlyList<MdevType> SupportedTypes { get; }

    /// <summary>The type's <c>available_instances</c> attribute (each v4.10 vendor provided its own).</summary>
    int AvailableInstances(MdevType type);

    /// <summary>-&gt;create(kobj, mdev): set up <paramref name="mdev"/> of <paramref name="type"/>; 0 or -errno (the create fails with it).</summary>
    int Create(MdevType type, MdevDevice mdev);

    /// <summary>-&gt;remove(mdev): 0, or -errno to refuse (the remove write then fails with EBUSY and the mdev stays; parent unregistration removes it anyway).</summary>
    int Remove(MdevDevice mdev);

    /// <summary>-&gt;open(mdev): each open of the vfio device; 0 or -errno. Vendors that pin register their VFIO_IOMMU_NOTIFY notifier here.</summary>
    int Open(MdevDevice mdev);

    /// <summary>-&gt;release(mdev): the vfio device file is released.</summary>
    void Release(MdevDevice mdev);

    /// <summary>-&gt;read(): bytes read or -errno.</summary>
    long Read(MdevDevice mdev, ulong buf, long count, ref long pos);

    /// <summary>-&gt;write(): bytes written or -errno.</summary>
    long Write(MdevDevice mdev, ulong buf, long count, ref long pos);

    /// <summary>-&gt;ioctl().</summary>
    long Ioctl(MdevDevice mdev, uint cmd, ulong arg);

    /// <summary>-&gt;mmap(): 0 or -errno.</summary>
    int Mmap(MdevDevice mdev, Vma vma);
}

/// <summary>A base with the v4.10 defaults of vfio_mdev for absent ops (-EINVAL); override what the vendor has.</summary>
public abstract class MdevParentOps : IMdevParentOps
{
    /// <inheritdoc/>
    public abstract IReadOnlyList<MdevType> SupportedTypes { get; }

    /// <inheritdoc/>
    public abstract int AvailableInstances(MdevType type);

    /// <inheritdoc/>
    public abstract int Create(MdevType type, MdevDevice mdev);

    /// <inheritdoc/>
    public abstract int Remove(MdevDevice mdev);

    /// <inheritdoc/>
    public virtual int Open(MdevDevice mdev) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual void Release(MdevDevice mdev)
    {
    }

    /// <inheritdoc/>
    public virtual long Read(MdevDevice mdev, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual long Write(MdevDevice mdev, ulong buf, long count, ref long pos) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual long Ioctl(MdevDevice mdev, uint cmd, ulong arg) => Errno.EINVAL.Negative();

    /// <inheritdoc/>
    public virtual int Mmap(MdevDevice mdev, Vma vma) => Errno.EINVAL.Negative();

    /// <summary>The vfio device the vfio_mdev bridge registered for <paramref name="mdev"/> (what v4.10's vfio_* calls find from mdev's struct device), or null.</summary>
    protected static VfioDevice? VfioDeviceOf(MdevDevice mdev) => VfioMdevDriver.DeviceOf(mdev);
}
