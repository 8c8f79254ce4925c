// Devices and drivers, the way an administrator handles them: look a function up, read
// which driver and IOMMU group it has from sysfs, and move it between drivers with the
// writes vfio.rst prescribes (unbind from the current driver, driver_override, then
// drivers_probe). Every write goes through sysfs, so it runs the driver core's paths —
// an unbind from a vfio driver blocks while user space holds the device, as it does on Linux.

using Vfio.Core.Client;
using Vfio.Kernel;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Sim;

public sealed partial class VfioSim
{
    /// <summary>The PCI function <paramref name="bdf"/> (<c>0000:01:00.0</c>); throws when the machine has none.</summary>
    public PciDevice Device(string bdf)
    {
        ArgumentException.ThrowIfNullOrEmpty(bdf);
        return Machine.Pci.Find(bdf)
            ?? throw new ArgumentException($"the machine has no PCI function {bdf}: it has {string.Join(", ", Machine.Pci.Devices.Select(d => d.Name))}", nameof(bdf));
    }

    /// <summary>The name of the driver <paramref name="bdf"/> is bound to (<c>readlink …/driver</c>), or null when it has none.</summary>
    public string? DriverOf(string bdf)
    {
        ArgumentException.ThrowIfNullOrEmpty(bdf);
        string? link = Machine.Sysfs.ReadLink($"/sys/bus/pci/devices/{bdf}/driver");
        return link is null ? null : link[(link.LastIndexOf('/') + 1)..];
    }

    /// <summary>The IOMMU group of <paramref name="bdf"/> (<c>readlink …/iommu_group</c>); throws when it has none.</summary>
    public int GroupOf(string bdf)
    {
        ArgumentException.ThrowIfNullOrEmpty(bdf);
        string link = Machine.Sysfs.ReadLink($"/sys/bus/pci/devices/{bdf}/iommu_group")
            ?? throw new InvalidOperationException($"{bdf} has no IOMMU group (the machine has {(Machine.Iommu is null ? "no IOMMU" : "an IOMMU, but the device is outside every group")})");
        return int.Parse(link.AsSpan(link.LastIndexOf('/') + 1), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Binds <paramref name="bdf"/> to <paramref name="driver"/> as vfio.rst does: unbind it
    /// from its current driver, write <paramref name="driver"/> to <c>driver_override</c>,
    /// and write the function to <c>drivers_probe</c>. Does nothing when it is already bound
    /// there. A write the kernel refuses throws <see cref="VfioException"/> with the errno and
    /// the reason; a probe that leaves the function elsewhere throws too. The writes made
    /// before the failure stay made, as they would after a shell script's failed step (the
    /// function may be left unbound with <c>driver_override</c> set; <see cref="Reprobe"/>
    /// gives it back to its host driver).
    /// </summary>
    /// <param name="bdf">The function, <c>0000:01:00.0</c>.</param>
    /// <param name="driver">The driver, <c>vfio-pci</c> by default.</param>
    /// <param name="caller">The process making the writes (root's <c>init</c> by default).</param>
    public void Bind(string bdf, string driver = "vfio-pci", SimProcess? caller = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(driver);
        Device(bdf);
        string? current = DriverOf(bdf);
        if (current == driver)
        {
            return;
        }

        if (current is not null)
        {
            SysfsWrite($"/sys/bus/pci/drivers/{current}/unbind", bdf, caller);
        }

        SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", driver, caller);
        SysfsWrite("/sys/bus/pci/drivers_probe", bdf, caller);
        string? now = DriverOf(bdf);
        if (now != driver)
        {
            throw new VfioException(Errno.ENODEV, $"bind {bdf} to {driver}", $"{driver} did not take {bdf} ({(now is null ? "no driver bound" : $"bound to {now}")}; {ErrorReason.Current ?? "see dmesg"})");
        }
    }

    /// <summary>
    /// Unbinds <paramref name="bdf"/> from its driver (<c>echo bdf &gt; …/unbind</c>) and clears
    /// <c>driver_override</c>, so <c>drivers_probe</c> would give it back to its host driver.
    /// Blocks while a vfio driver waits for user space to release the device. Returns the
    /// driver it was bound to, or null when it had none.
    /// </summary>
    public string? Unbind(string bdf, SimProcess? caller = null)
    {
        Device(bdf);
        string? current = DriverOf(bdf);
        if (current is not null)
        {
            SysfsWrite($"/sys/bus/pci/drivers/{current}/unbind", bdf, caller);
        }

        SysfsWrite($"/sys/bus/pci/devices/{bdf}/driver_override", "", caller);
        return current;
    }

    /// <summary>
    /// Gives <paramref name="bdf"/> back to the driver the machine binds it to (its host
    /// driver): unbind, clear <c>driver_override</c>, <c>drivers_probe</c>. Returns the driver
    /// it is bound to afterwards, or null.
    /// </summary>
    public string? Reprobe(string bdf, SimProcess? caller = null)
    {
        Unbind(bdf, caller);
        SysfsWrite("/sys/bus/pci/drivers_probe", bdf, caller);
        return DriverOf(bdf);
    }

    /// <summary>Reads a sysfs attribute (trailing newline removed); throws <see cref="VfioException"/> with the errno when the read fails.</summary>
    public string SysfsRead(string path, SimProcess? caller = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string? text = Machine.Sysfs.Read(path, out int err, caller);
        return text?.TrimEnd('\n') ?? throw new VfioException(ErrnoExtensions.FromReturn(err), $"read({path})", ErrorReason.Current);
    }

    /// <summary><c>echo value &gt; path</c>: writes a sysfs attribute; throws <see cref="VfioException"/> with the errno and the kernel's reason when the write fails.</summary>
    public void SysfsWrite(string path, string value, SimProcess? caller = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(value);
        long rc = Machine.Sysfs.Write(path, value, caller);
        if (rc < 0)
        {
            throw new VfioException(ErrnoExtensions.FromReturn(rc), $"write({path}, \"{value}\")", ErrorReason.Current);
        }
    }
}
