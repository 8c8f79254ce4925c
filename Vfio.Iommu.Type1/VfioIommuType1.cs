// Models the module side of drivers/vfio/vfio_iommu_type1.c (v6.12): its parameters
// (allow_unsafe_interrupts, disable_hugepages, dma_entry_limit, runtime-writable under
// /sys/module/vfio_iommu_type1/parameters), its vfio_iommu_driver_ops and the
// registration with the vfio core. One VfioIommu per container does the work.
//
// VFIO_TYPE1_NESTING_IOMMU is offered on every profile, as it is in v6.1 and v6.12: it
// opens a v2 instance. v6.13 removed it (35890f85573c, "vfio: Remove
// VFIO_TYPE1_NESTING_IOMMU"); the simulator has no 6.13+ profile, so nothing gates it.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Iommu;

namespace Vfio.Iommu.Type1;

/// <summary>Load-time values of the type1 module parameters.</summary>
public sealed record VfioIommuType1Options
{
    /// <summary>allow_unsafe_interrupts: attach groups whose IOMMU cannot isolate MSI (default false).</summary>
    public bool AllowUnsafeInterrupts { get; init; }

    /// <summary>disable_hugepages: map every page separately, so no superpage leaf forms (default false).</summary>
    public bool DisableHugepages { get; init; }

    /// <summary>dma_entry_limit: mappings per container, read when a container is created (default 65535).</summary>
    public uint DmaEntryLimit { get; init; } = VfioIommuType1.DefaultDmaEntryLimit;
}

/// <summary>The type1 IOMMU backend (vfio_iommu_type1.ko): registered with the vfio core as "vfio-iommu-type1".</summary>
public sealed partial class VfioIommuType1 : IVfioIommuDriver
{
    /// <summary>The default of dma_entry_limit (U16_MAX).</summary>
    public const uint DefaultDmaEntryLimit = ushort.MaxValue;

    private volatile bool _allowUnsafeInterrupts;
    private volatile bool _disableHugepages;
    private uint _dmaEntryLimit;

    private VfioIommuType1(SimMachine machine, VfioIommuType1Options options)
    {
        Machine = machine;
        Kernel = machine.Kernel;
        Core = VfioCore.Of(machine);
        _allowUnsafeInterrupts = options.AllowUnsafeInterrupts;
        _disableHugepages = options.DisableHugepages;
        _dmaEntryLimit = options.DmaEntryLimit;
    }

    /// <summary>The machine this module is loaded on.</summary>
    public SimMachine Machine { get; }

    /// <summary>The simulated kernel.</summary>
    public SimKernel Kernel { get; }

    /// <summary>The vfio core the backend is registered with.</summary>
    public VfioCore Core { get; }

    /// <summary>allow_unsafe_interrupts (writable at run time, as the 0644 parameter is).</summary>
    public bool AllowUnsafeInterrupts
    {
        get => _allowUnsafeInterrupts;
        set => _allowUnsafeInterrupts = value;
    }

    /// <summary>disable_hugepages (writable at run time; read at each map and replay).</summary>
    public bool DisableHugepages
    {
        get => _disableHugepages;
        set => _disableHugepages = value;
    }

    /// <summary>dma_entry_limit (writable at run time; a container reads it once, when created).</summary>
    public uint DmaEntryLimit
    {
        get => Volatile.Read(ref _dmaEntryLimit);
        set => Volatile.Write(ref _dmaEntryLimit, value);
    }

    /// <inheritdoc/>
    public string Name => "vfio-iommu-type1";

    /// <inheritdoc/>
    public bool HasDeviceRegistration => true;

    /// <summary>
    /// Loads vfio_iommu_type1 on <paramref name="machine"/> (vfio must be loaded): creates the
    /// parameter files and registers the backend. Loading twice is a programming error.
    /// </summary>
    public static VfioIommuType1 Load(SimMachine machine, VfioIommuType1Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(machine);
        var t = new VfioIommuType1(machine, options ?? new VfioIommuType1Options());
        if (!machine.AddModule(t))
        {
            throw new InvalidOperationException("vfio_iommu_type1 is already loaded on this machine");
        }

        t.CreateParameterFiles();
        int err = t.Core.RegisterIommuDriver(t);
        if (err != 0)
        {
            throw new InvalidOperationException($"vfio_iommu_type1: registering the backend failed: {ErrnoExtensions.FromReturn(err).Describe()}");
        }

        return t;
    }

    /// <summary>The type1 module of <paramref name="machine"/>; throws when it is not loaded.</summary>
    public static VfioIommuType1 Of(SimMachine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        return machine.GetModule<VfioIommuType1>() ?? throw new InvalidOperationException("vfio_iommu_type1 is not loaded on this machine: call VfioIommuType1.Load(machine) after VfioCore.Load");
    }

    private void CreateParameterFiles()
    {
        var vfs = Machine.Vfs;
        var fs = Machine.Sysfs;
        var dir = vfs.MkdirP("/sys/module/vfio_iommu_type1/parameters");
        fs.CreateFile(dir, "allow_unsafe_interrupts", 0x1a4, () => AllowUnsafeInterrupts ? "Y\n" : "N\n", v => StoreBool(v, b => AllowUnsafeInterrupts = b));
        fs.CreateFile(dir, "disable_hugepages", 0x1a4, () => DisableHugepages ? "Y\n" : "N\n", v => StoreBool(v, b => DisableHugepages = b));
        fs.CreateFile(dir, "dma_entry_limit", 0x1a4, () => $"{DmaEntryLimit}\n", StoreLimit);
    }

    private static long StoreBool(string value, Action<bool> set)
    {
        switch (value.Trim())
        {
            case "1" or "Y" or "y":
                set(true);
                return 0;
            case "0" or "N" or "n":
                set(false);
                return 0;
            default:
                return Errno.EINVAL.Negative();
        }
    }

    private long StoreLimit(string value)
    {
        if (!uint.TryParse(value.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint v))
        {
            return Errno.EINVAL.Negative();
        }

        DmaEntryLimit = v;
        return 0;
    }

    /// <summary>The type1 instance behind <paramref name="container"/>, or null when its backend is not type1.</summary>
    internal static VfioIommu? Instance(VfioContainer container)
    {
        ArgumentNullException.ThrowIfNull(container);
        return container.IommuData as VfioIommu;
    }

    // ---- vfio_iommu_driver_ops.

    /// <inheritdoc/>
    public int Open(ulong arg, out object? iommuData)
    {
        iommuData = null;
        bool v2;
        switch (arg)
        {
            case VfioExtension.Type1:
                v2 = false;
                break;
            case VfioExtension.Type1v2:
            case VfioExtension.Type1Nesting:
                v2 = true;
                break;
            default:
                return ErrorReason.Fail(Errno.EINVAL, $"VFIO_SET_IOMMU: type1 does not provide IOMMU type {arg}");
        }

        iommuData = new VfioIommu(this, v2, nesting: arg == VfioExtension.Type1Nesting);
        return 0;
    }

    /// <inheritdoc/>
    public void Release(object? iommuData) => ((VfioIommu)iommuData!).Release();

    /// <inheritdoc/>
    public long Ioctl(object? iommuData, uint cmd, ulong arg)
    {
        if (cmd == VfioIoctl.CheckExtension)
        {
            return VfioIommu.CheckExtension(iommuData as VfioIommu, arg);
        }

        return ((VfioIommu)iommuData!).Ioctl(cmd, arg);
    }

    /// <inheritdoc/>
    public int AttachGroup(object? iommuData, IommuGroup group, VfioGroupType type) => ((VfioIommu)iommuData!).AttachGroup(group, type);

    /// <inheritdoc/>
    public void DetachGroup(object? iommuData, IommuGroup group) => ((VfioIommu)iommuData!).DetachGroup(group);

    /// <inheritdoc/>
    public int PinPages(object? iommuData, IommuGroup group, ulong iova, int prot, Span<ulong> pfns) => ((VfioIommu)iommuData!).PinPages(group, iova, prot, pfns);

    /// <inheritdoc/>
    public void UnpinPages(object? iommuData, ulong iova, int npage) => ((VfioIommu)iommuData!).UnpinPages(iova, npage);

    /// <inheritdoc/>
    public void RegisterDevice(object? iommuData, VfioDevice device) => ((VfioIommu)iommuData!).RegisterDevice(device);

    /// <inheritdoc/>
    public void UnregisterDevice(object? iommuData, VfioDevice device) => ((VfioIommu)iommuData!).UnregisterDevice(device);

    /// <inheritdoc/>
    public int DmaRw(object? iommuData, ulong iova, Span<byte> data, bool write) => ((VfioIommu)iommuData!).DmaRw(iova, data, write);
}
