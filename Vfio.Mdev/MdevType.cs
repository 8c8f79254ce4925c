// Models struct mdev_type (include/linux/mdev.h, drivers/vfio/mdev/mdev_sysfs.c, v6.12):
// one kind of mediated device a parent offers, with its directory
// <parent>/mdev_supported_types/<driver>-<sysfs_name>/ (create, name, device_api,
// available_instances, optional description, devices/).

using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev;

/// <summary>struct mdev_type: set <see cref="SysfsName"/> and <see cref="PrettyName"/>, then register the parent.</summary>
public class MdevType
{
    /// <summary>A type whose directory ends in <paramref name="sysfsName"/> and whose <c>name</c> attribute is <paramref name="prettyName"/> (or the sysfs name when null).</summary>
    public MdevType(string sysfsName, string? prettyName = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(sysfsName);
        SysfsName = sysfsName;
        PrettyName = prettyName;
    }

    /// <summary>-&gt;sysfs_name (<c>1</c> for mtty-1).</summary>
    public string SysfsName { get; }

    /// <summary>-&gt;pretty_name, or null.</summary>
    public string? PrettyName { get; }

    /// <summary>-&gt;parent (set by registration).</summary>
    public MdevParent? Parent { get; internal set; }

    /// <summary>The directory name, <c>&lt;driver&gt;-&lt;sysfs_name&gt;</c> (set by registration).</summary>
    public string? DirName { get; internal set; }

    /// <summary>The type's directory (null unless registered).</summary>
    public VfsDir? SysfsDir { get; internal set; }

    /// <summary>The type's <c>devices/</c> directory (null unless registered).</summary>
    public VfsDir? DevicesDir { get; internal set; }

    /// <summary>The type kobject's kref (set by registration): the type holds a reference on the parent's device until its last put; each mdev holds one on the type.</summary>
    internal KRef? Kref { get; set; }

    /// <summary>
    /// The kernfs active protection of the type's attributes (kn-&gt;active): a create write
    /// holds it for read; removing the type deactivates it and drains it (takes it for
    /// write once), so no create runs on a type that is gone.
    /// </summary>
    internal RwSemaphore? Active { get; set; }

    /// <summary>Set when removal starts: new attribute writes fail (kernfs_get_active() fails, -ENODEV).</summary>
    internal bool Deactivated
    {
        get => Volatile.Read(ref _deactivated);
        set => Volatile.Write(ref _deactivated, value);
    }

    private bool _deactivated;

    /// <inheritdoc/>
    public override string ToString() => DirName ?? SysfsName;
}
