// The typed vfio client's error: a failed syscall's errno, the call's name, and the reason
// the simulated kernel recorded for it (ErrorReason), formatted as the project's messages are.

using Vfio.Kernel;

namespace Vfio.Core.Client;

/// <summary>
/// A VFIO call made through the typed client failed. The message reads
/// <c>"&lt;IOCTL NAME&gt;: &lt;reason&gt; — &lt;ERRNO NAME&gt;"</c>, for instance
/// <c>VFIO_GROUP_SET_CONTAINER: group 26 is not viable — EPERM</c>.
/// </summary>
public sealed class VfioException : Exception
{
    /// <summary>Creates the exception for <paramref name="errno"/> returned by <paramref name="ioctl"/>.</summary>
    /// <param name="errno">The errno the syscall returned.</param>
    /// <param name="ioctl">The ioctl's kernel name (or the syscall, such as <c>open(/dev/vfio/vfio)</c>).</param>
    /// <param name="reason">
    /// Why the kernel failed the call, when it said; otherwise the errno's description is
    /// used. A reason that already starts with "<paramref name="ioctl"/>: " is not prefixed again.
    /// </param>
    public VfioException(Errno errno, string ioctl, string? reason)
        : base(Format(errno, ioctl, reason))
    {
        Errno = errno;
        Ioctl = ioctl;
        Reason = reason;
    }

    /// <summary>The errno the call returned.</summary>
    public Errno Errno { get; }

    /// <summary>The kernel name of the failed ioctl (VFIO_IOMMU_MAP_DMA…), or the syscall for non-ioctl calls.</summary>
    public string Ioctl { get; }

    /// <summary>The reason the kernel recorded for the failure, or null when it recorded none.</summary>
    public string? Reason { get; }

    /// <summary>
    /// Builds the exception for a negative syscall return, on the thread that made the call
    /// and right after it, so the kernel's recorded reason is this call's.
    /// </summary>
    internal static VfioException FromReturn(long ret, string ioctl) => new(ErrnoExtensions.FromReturn(ret), ioctl, ErrorReason.Current);

    private static string Format(Errno errno, string ioctl, string? reason)
    {
        ArgumentNullException.ThrowIfNull(ioctl);
        string why = reason ?? errno.Message();
        // Some kernel paths (VfioArg) name the ioctl in their reason already.
        if (why.Length > ioctl.Length + 1 && why.StartsWith(ioctl, StringComparison.Ordinal) && why[ioctl.Length] == ':')
        {
            why = why[(ioctl.Length + 1)..].TrimStart();
        }

        return $"{ioctl}: {why} — {errno.Name()}";
    }
}
