// Lab 2, on drivers/vfio/container.c, group.c and vfio_iommu_type1.c (v6.12): a container,
// a group in it, a type1 IOMMU, one DMA mapping — and what the IOMMU does to a device's DMA
// once the mapping is gone.
//
// The grader owns the device: it binds edu to vfio-pci before the solution runs and, between
// the solution's steps, programs edu's DMA engine itself (BAR0 from the kernel side, as a
// second agent would) so that it can see each transfer's outcome: bytes moved, or an IOMMU
// fault. The order is Map, DMA in and out, Unmap, DMA again (must fault), Close, exit.

using System.Buffers.Binary;
using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>
/// What a lab 2 solution implements: three steps of a user-space driver that the grader calls
/// in order on one instance (keep what you open in fields), with its own DMA between them.
/// </summary>
public abstract class DmaMappingSolution
{
    /// <summary>
    /// Opens the container and <paramref name="env"/>'s device's group, puts the group in the
    /// container, chooses the type1 v2 IOMMU, allocates <see cref="Lab02DmaMapping.BufferSize"/>
    /// bytes and maps them at <see cref="Lab02DmaMapping.Iova"/> so that the device may read
    /// and write them. Returns the buffer's user virtual address.
    /// </summary>
    public abstract ulong Map(LabEnvironment env);

    /// <summary>Removes the mapping <see cref="Map"/> made.</summary>
    public abstract void Unmap(LabEnvironment env);

    /// <summary>Closes every fd <see cref="Map"/> opened and frees the buffer.</summary>
    public abstract void Close(LabEnvironment env);
}

/// <summary>Lab 2: container, mapping and the IOMMU fault after unmap.</summary>
public sealed class Lab02DmaMapping : Lab
{
    /// <summary>The IOVA the buffer is mapped at.</summary>
    public const ulong Iova = 0x10_0000;

    /// <summary>The buffer's size: 64 KiB, 16 pages.</summary>
    public const ulong BufferSize = 64 * 1024;

    /// <summary>The edu device the grader binds to vfio-pci (the default machine's).</summary>
    public const string Edu = "0000:01:00.0";

    /// <summary>The seed of the grader's machine.</summary>
    public const ulong Seed = 2;

    // edu writes back one page into the buffer, so a mapping of the first page only is not enough.
    private const ulong BackOffset = 0x1000;
    private const int DmaBytes = 256;
    private const long Pages = (long)(BufferSize / PhysMem.PageSize);

    /// <inheritdoc/>
    public override int Number => 2;

    /// <inheritdoc/>
    public override string Slug => "dma-mapping";

    /// <inheritdoc/>
    public override string Title => "Container, mapping and the IOMMU fault after unmap";

    /// <inheritdoc/>
    public override string Summary => "Map a buffer for DMA through a container, watch edu use it, unmap it and see the IOMMU stop the next transfer.";

    /// <inheritdoc/>
    public override string Story => "vfio.rst's edu (vfio-rst-demo), default machine, seed 2";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(DmaMappingSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.DmaMapping();

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        var s = solution as DmaMappingSolution
            ?? throw new ArgumentException($"lab 2 grades a {nameof(DmaMappingSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        return new Grader(this, s).Run();
    }

    // One grading run: the session, the device, and the outcome of each step.
    private sealed class Grader(Lab02DmaMapping lab, DmaMappingSolution solution)
    {
        private readonly LabSession _session = new(VfioSim.CreateBuilder().UseSeed(Seed).AddVfioPci());
        private EduDevice _edu = null!;
        private LabEnvironment _env = null!;

        public LabGrade Run()
        {
            VfioSim sim = _session.Sim;
            string? setup = _session.RunGrader(() => sim.Bind(Edu));
            if (setup is not null)
            {
                throw new InvalidOperationException(setup);
            }

            _edu = (EduDevice)sim.Device(Edu);
            _env = new LabEnvironment(sim, _session.Process, Edu);
            byte[] pattern = Pattern();

            // Step 1: Map.
            ulong va = 0;
            string? mapError = _session.RunSolution(() => va = solution.Map(_env));
            bool inContainer = CheckContainer(mapError);
            bool mapped = CheckMapped(mapError, inContainer);

            // The device reads the buffer, then writes it one page on.
            bool canDma = mapped && WriteBuffer(va, pattern);
            if (canDma)
            {
                CheckDmaIn(pattern);
                CheckDmaOut(va, pattern);
            }
            else
            {
                string why = mapped ? $"the grader could not write the test bytes at the address Map returned (0x{va:x}): return the buffer's user virtual address" : "Map did not map the buffer";
                _session.Skip("edu reads the buffer by DMA", 15, why);
                _session.Skip("edu writes into the buffer by DMA", 15, why);
            }

            // Step 2: Unmap, then the same transfer must fault.
            string? unmapError = mapped ? _session.RunSolution(() => solution.Unmap(_env)) : null;
            if (mapped)
            {
                CheckUnmapped(unmapError);
                CheckFaultAfterUnmap();
            }
            else
            {
                _session.Skip("UNMAP_DMA releases the mapping", 15, "Map did not map the buffer");
                _session.Skip("edu's DMA after the unmap faults", 15, "Map did not map the buffer");
            }

            // Step 3: Close, then the process exits.
            string? closeError = _session.RunSolution(() => solution.Close(_env));
            CheckClosed(closeError);
            _session.ExitStudent();
            _session.CheckQuiet(5);
            return _session.Grade(lab);
        }

        private bool CheckContainer(string? mapError)
        {
            IommuDomainType? domain = _edu.IommuGroup?.Domain?.Type;
            int group = _session.Sim.GroupOf(Edu);
            bool ok = domain == IommuDomainType.Unmanaged;
            string calls = VfioCalls();
            string message = ok
                ? $"group {group} is in a container and attached to vfio's unmanaged IOMMU domain"
                : (mapError is not null ? $"Map failed: {mapError}\n" : "")
                    + $"edu's IOMMU group {group} is not attached to an IOMMU domain of vfio's (it is in {(domain is null ? "no domain" : $"a {domain.Value.SysfsName()} domain")}). "
                    + $"A group gets one when it is in a container (VFIO_GROUP_SET_CONTAINER with the container's fd) and the container has an IOMMU (VFIO_SET_IOMMU with VFIO_TYPE1v2_IOMMU), in that order; see the handout's step 1. "
                    + $"Your process's vfio calls: {calls}";
            return _session.Check("the group is in a container with a type1 IOMMU", 10, ok, message);
        }

        private bool CheckMapped(string? mapError, bool inContainer)
        {
            const string name = "MAP_DMA maps and pins the buffer";
            if (!inContainer)
            {
                return _session.Skip(name, 15, "the group has no type1 IOMMU, so there is nothing to map into");
            }

            IReadOnlyList<SyscallRecord> maps = _session.Calls("VFIO_IOMMU_MAP_DMA");
            bool succeeded = maps.Any(r => r.Return == 0);
            long pinned = _session.PinnedByStudent;
            if (mapError is not null || !succeeded)
            {
                return _session.Check(name, 15, false, (mapError is not null ? $"Map failed: {mapError}\n" : "")
                    + (maps.Count == 0
                        ? "VFIO_IOMMU_MAP_DMA was never called: without a mapping the device can reach no memory at all. See the handout's step 2."
                        : $"VFIO_IOMMU_MAP_DMA was called {maps.Count} time(s) and never succeeded: {maps[^1]}"));
            }

            bool ok = pinned == Pages && _session.Process.Mm.LockedVm == Pages;
            return _session.Check(name, 15, ok, ok
                ? $"MAP_DMA pinned the {Pages} pages of the buffer and charged them to locked_vm"
                : $"after Map, {pinned} pages are pinned and locked_vm is {_session.Process.Mm.LockedVm} pages, but the {BufferSize / 1024} KiB buffer is {Pages} pages: "
                    + $"type1 pins every page of a mapping when MAP_DMA maps it, so map exactly the buffer (size {BufferSize}, once)");
        }

        private void CheckDmaIn(byte[] pattern)
        {
            int rc = Dma(Iova, EduDevice.DmaBufferStart, toRam: false);
            byte[] inEdu = _edu.CopyBuffer().AsSpan(0, DmaBytes).ToArray();
            bool ok = rc == 0 && inEdu.AsSpan().SequenceEqual(pattern);
            _session.Check("edu reads the buffer by DMA", 15, ok, ok
                ? $"edu read {DmaBytes} bytes at IOVA {Hex(Iova)} and they are the buffer's"
                : rc != 0 ? $"edu's DMA read of IOVA {Hex(Iova)} failed ({Errno(rc)}): {FaultText(Iova)}"
                : $"edu's DMA read of IOVA {Hex(Iova)} succeeded but brought other bytes than the buffer's: IOVA {Hex(Iova)} must map the start of the buffer Map returns");
        }

        private void CheckDmaOut(ulong va, byte[] pattern)
        {
            int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, toRam: true);
            byte[] back = new byte[DmaBytes];
            bool read = _session.Process.Mm.ReadUser(va + BackOffset, back) == 0;
            bool ok = rc == 0 && read && back.AsSpan().SequenceEqual(pattern);
            _session.Check("edu writes into the buffer by DMA", 15, ok, ok
                ? $"edu wrote {DmaBytes} bytes at IOVA {Hex(Iova + BackOffset)} and they arrived in the buffer"
                : rc != 0 ? $"edu's DMA write to IOVA {Hex(Iova + BackOffset)} failed ({Errno(rc)}): {FaultText(Iova + BackOffset)}"
                : $"edu's DMA write to IOVA {Hex(Iova + BackOffset)} succeeded but the bytes did not arrive at the buffer + {Hex(BackOffset)}: map the buffer itself, all of it");
        }

        private void CheckUnmapped(string? unmapError)
        {
            const string name = "UNMAP_DMA releases the mapping";
            IReadOnlyList<SyscallRecord> unmaps = _session.Calls("VFIO_IOMMU_UNMAP_DMA");
            long pinned = _session.PinnedByStudent;
            bool ok = unmapError is null && pinned == 0 && _session.Process.Mm.LockedVm == 0;
            string message;
            if (ok)
            {
                message = $"after Unmap no page is pinned and locked_vm is 0";
            }
            else if (unmapError is not null)
            {
                message = $"Unmap failed: {unmapError}\n"
                    + $"Under VFIO_TYPE1v2_IOMMU an unmap may not cut a mapping in two: [iova, iova + size) must start and end where mappings start and end (EINVAL otherwise). "
                    + $"Unmap exactly what Map mapped: iova {Hex(Iova)}, size {BufferSize}.";
            }
            else if (unmaps.Count == 0)
            {
                message = $"VFIO_IOMMU_UNMAP_DMA was never called: {pinned} pages of the buffer are still pinned and the device can still reach them. "
                    + "A driver must unmap what it mapped when it is done with it; see the handout's step 3.";
            }
            else
            {
                message = $"VFIO_IOMMU_UNMAP_DMA was called ({unmaps[^1]}) but {pinned} pages are still pinned: "
                    + $"an unmap of a range where nothing is mapped succeeds and unmaps nothing (the size it writes back is 0). Unmap the IOVA the buffer was mapped at, {Hex(Iova)}, size {BufferSize}.";
            }

            _session.Check(name, 15, ok, message);
        }

        private void CheckFaultAfterUnmap()
        {
            const string name = "edu's DMA after the unmap faults";
            long before = _session.Sim.Machine.Iommu!.Hardware.Faults.Total;
            int rc = Dma(EduDevice.DmaBufferStart, Iova + BackOffset, toRam: true);
            IReadOnlyList<IommuFault> faults = _session.Sim.IommuFaults;
            IommuFault? fault = _session.Sim.Machine.Iommu!.Hardware.Faults.Total > before && faults.Count > 0 ? faults[^1] : null;
            bool ok = rc == Vfio.Kernel.Errno.EFAULT.Negative() && fault is { Reason: IommuFaultReason.NotPresent } f && f.Device == Edu && f.Iova == Iova + BackOffset;
            _session.Check(name, 15, ok, ok
                ? $"edu's write to IOVA {Hex(Iova + BackOffset)} failed with EFAULT and the IOMMU logged: {fault}"
                : rc == 0
                    ? $"edu's DMA write to IOVA {Hex(Iova + BackOffset)} still succeeded after Unmap: the IOVA is still mapped, so the device can still write into your process's memory — "
                        + "which is what unmapping must prevent. After a correct UNMAP_DMA the IOMMU finds no translation and refuses the write (EFAULT, a not-present fault in its log)."
                    : $"edu's DMA write after Unmap ended with {Errno(rc)} and the fault {fault?.ToString() ?? "(none logged)"}; expected EFAULT with a not-present fault at IOVA {Hex(Iova + BackOffset)}");
        }

        private void CheckClosed(string? closeError)
        {
            IReadOnlyList<(int Fd, Vfio.Platform.Fs.SimFile File)> open = _session.Process.Files.Open;
            bool ok = closeError is null && open.Count == 0;
            string message = ok
                ? "Close left no fd open"
                : (closeError is not null ? $"Close failed: {closeError}\n" : "")
                    + (open.Count == 0 ? "" : $"after Close these fds are still open: {string.Join(", ", open.Select(o => $"fd {o.Fd} ({o.File.Path})"))}. "
                        + "Close every fd you opened (the group before the container, as vfio.rst does); the kernel tears the container down only when its last fd is gone.");
            _session.Check("Close closes every fd", 10, ok, message);
        }

        // ---- The device side.

        // Enables memory decode and bus mastering, programs one transfer of DmaBytes bytes
        // through BAR0 and sleeps on the virtual clock until edu clears its start bit; returns
        // edu's result (0, -EFAULT on an IOMMU fault, -EIO without bus mastering).
        private int Dma(ulong src, ulong dst, bool toRam)
        {
            int rc = int.MinValue;
            string? failed = _session.RunGrader(() =>
            {
                ushort cmd = (ushort)_edu.ReadConfig(PciRegs.Command, 2);
                _edu.WriteConfig(PciRegs.Command, (uint)(cmd | PciRegs.CommandMemory | PciRegs.CommandMaster), 2);
                Write64(EduDevice.RegDmaSource, src);
                Write64(EduDevice.RegDmaDestination, dst);
                Write64(EduDevice.RegDmaCount, DmaBytes);
                Write64(EduDevice.RegDmaCommand, EduDevice.DmaCmdStart | (toRam ? EduDevice.DmaCmdToRam : 0));
                for (int i = 0; i < 20 && (Read64(EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) != 0; i++)
                {
                    KTask.Msleep(50);
                }

                rc = _edu.LastDmaResult;
            });
            if (failed is not null)
            {
                throw new InvalidOperationException(failed);
            }

            return rc;
        }

        private void Write64(int reg, ulong value)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(b, value);
            _edu.BarAccess(0, reg, (ReadOnlySpan<byte>)b);
        }

        private ulong Read64(int reg)
        {
            Span<byte> b = stackalloc byte[8];
            _edu.BarAccess(0, reg, b);
            return BinaryPrimitives.ReadUInt64LittleEndian(b);
        }

        private bool WriteBuffer(ulong va, byte[] pattern) => _session.Process.Mm.WriteUser(va, pattern) == 0;

        private string FaultText(ulong iova)
        {
            IommuFault? f = _session.Sim.IommuFaults.LastOrDefault(x => x.Device == Edu);
            return f switch
            {
                null => "the IOMMU logged no fault",
                { Reason: IommuFaultReason.Permission, Access: IommuAccess.Write } => $"the IOMMU refused the write ({f}): the mapping does not let the device write. "
                    + "MAP_DMA's flags say what the device may do: VFIO_DMA_MAP_FLAG_READ lets it read the memory, VFIO_DMA_MAP_FLAG_WRITE lets it write; a buffer edu writes into needs WRITE.",
                { Reason: IommuFaultReason.Permission } => $"the IOMMU refused the read ({f}): the mapping does not let the device read; it needs VFIO_DMA_MAP_FLAG_READ.",
                { Reason: IommuFaultReason.NotPresent } => $"the IOMMU found no translation for IOVA {Hex(iova)} ({f}): nothing is mapped there. Map the buffer at IOVA {Hex(Iova)}, all {BufferSize} bytes.",
                _ => $"the IOMMU logged {f}",
            };
        }

        private string VfioCalls()
        {
            IReadOnlyList<SyscallRecord> all = _session.Strace;
            IEnumerable<string> calls = all.Where(r => r.Request is not null && r.Request.StartsWith("VFIO_", StringComparison.Ordinal) || r.Syscall == "openat")
                .Select(r => r.Request is null ? $"openat = {r.ReturnText}" : $"{r.Request} = {r.ReturnText}");
            string joined = string.Join("; ", calls);
            return joined.Length == 0 ? "none" : joined;
        }

        private static byte[] Pattern()
        {
            byte[] b = new byte[DmaBytes];
            for (int i = 0; i < b.Length; i++)
            {
                b[i] = (byte)(i * 7 + 3);
            }

            return b;
        }

        private static string Errno(int rc) => rc < 0 ? ErrnoExtensions.FromReturn(rc).Describe() : rc.ToString(CultureInfo.InvariantCulture);

        private static string Hex(ulong v) => string.Create(CultureInfo.InvariantCulture, $"0x{v:x}");
    }

}
