// Lab 3: a user-space driver for QEMU's edu through vfio-pci (drivers/vfio/pci, v6.12, and
// QEMU's hw/misc/edu.c). The student's code opens edu (bound to vfio-pci by the grader),
// checks its identification and liveness registers, has edu compute a factorial, DMAs a
// buffer into edu and back through the IOMMU, waits for each completion MSI on an eventfd,
// and cleans up. The grader checks what the device did (edu's counters, which survive the
// reset vfio-pci gives it on the last close), what came back, the interrupts sent and read,
// the IOMMU fault log, what is still pinned or open when the solution returns, and WARNs.

using System.Globalization;
using Vfio.Kernel;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu;
using Vfio.Platform.Proc;

namespace Vfio.Sim.Labs;

/// <summary>What lab 3 asks edu to do: the values the grader chose for this run.</summary>
/// <param name="LivenessProbe">The value to store in edu's liveness register (BAR0 + 0x04).</param>
/// <param name="FactorialOperand">The number whose factorial edu computes (BAR0 + 0x08).</param>
/// <param name="Payload">The bytes to DMA into edu's buffer and back (at most 4096).</param>
public sealed record EduAssignment(uint LivenessProbe, uint FactorialOperand, byte[] Payload);

/// <summary>What a lab 3 driver read from edu.</summary>
/// <param name="Identification">The identification register (BAR0 + 0x00).</param>
/// <param name="Liveness">The liveness register read back after storing the probe.</param>
/// <param name="Factorial">The factorial register once edu signalled completion.</param>
/// <param name="Returned">The bytes edu DMA'd back into the user buffer.</param>
public sealed record EduDriverResult(uint Identification, uint Liveness, uint Factorial, byte[] Returned);

/// <summary>
/// Lab 3's solution: a user-space driver for QEMU's edu device. <see cref="Run"/> runs as the
/// student's process (<see cref="LabEnvironment.Process"/>); edu (<see cref="LabEnvironment.Device"/>)
/// is bound to vfio-pci already.
/// </summary>
public abstract class EduDriverSolution
{
    /// <summary>
    /// Opens edu, does <paramref name="assignment"/> with the device (registers, factorial,
    /// DMA to edu and back, completion interrupts), cleans up, and returns what edu said.
    /// </summary>
    public abstract EduDriverResult Run(LabEnvironment env, EduAssignment assignment);
}

/// <summary>Lab 3: a user-space edu driver with DMA and an interrupt.</summary>
internal sealed class Lab03EduDriver : Lab
{
    /// <summary>edu on the default machine.</summary>
    internal const string Edu = "0000:01:00.0";

    internal static readonly EduAssignment Assignment = new(0x5eed0003, 11, BuildPayload());

    /// <inheritdoc/>
    public override int Number => 3;

    /// <inheritdoc/>
    public override string Slug => "edu-driver";

    /// <inheritdoc/>
    public override string Title => "A user-space edu driver: registers, DMA and an interrupt";

    /// <inheritdoc/>
    public override string Story => "vfio.rst's edu (vfio-rst-demo), seed 3";

    /// <inheritdoc/>

    public override string Summary => "Drive QEMU's edu through vfio-pci: BAR0 registers, a factorial, DMA through the IOMMU both ways, the completion MSI on an eventfd, and a clean exit.";

    /// <inheritdoc/>
    public override Type SolutionType => typeof(EduDriverSolution);

    /// <inheritdoc/>
    public override object CreateReferenceSolution() => new LabCourse.EduDriver();

    /// <summary>The machine: the default one, vfio-pci loaded, edu bound to it.</summary>
    internal static VfioSimBuilder Builder()
        => VfioSim.CreateBuilder().UseSeed(3).AddVfioPci().AddModule(sim => sim.Bind(Edu));

    /// <inheritdoc/>
    public override LabGrade Grade(object solution)
    {
        if (solution is not EduDriverSolution driver)
        {
            throw new ArgumentException($"lab 3 grades an {nameof(EduDriverSolution)}, not {solution?.GetType().Name ?? "null"}", nameof(solution));
        }

        var session = new LabSession(Builder());
        VfioSim sim = session.Sim;
        SimProcess p = session.Process;
        var edu = (EduDevice)sim.Device(Edu);
        var env = new LabEnvironment(sim, p, Edu);
        EduAssignment assignment = Assignment with { Payload = (byte[])Assignment.Payload.Clone() };
        long pinned0 = sim.PinnedPages;
        int faults0 = sim.IommuFaults.Count;
        long factorials0 = edu.FactorialsComputed, transfers0 = edu.DmaTransfers, msi0 = edu.MsiSent;

        EduDriverResult? result = null;
        long pinnedAtEnd = 0;
        List<string> vfioFdsAtEnd = [];
        List<int> eventfdsAtEnd = [];
        string? failure = session.RunSolution(() =>
        {
            try
            {
                result = driver.Run(env, assignment);
            }
            finally
            {
                // What the solution left when it returned (or threw), before anything else closes it.
                pinnedAtEnd = sim.PinnedPages;
                vfioFdsAtEnd = LabEvidence.OpenVfioFds(p);
                eventfdsAtEnd = LabEvidence.OpenFds(p, LabFdKind.Eventfd);
            }
        });

        IReadOnlyList<SyscallRecord> strace = session.Strace;
        session.Check("the driver runs to completion", 5, failure is null,
            failure is null ? "Run returned" : $"{failure}\nThe checks below say what the device saw; the handout's hints list the usual causes.");

        CheckRegisters(session, result, assignment);
        CheckFactorial(session, result, assignment, edu.FactorialsComputed - factorials0);

        IReadOnlyList<IommuFault> faults = [.. sim.IommuFaults.Skip(faults0)];
        long transfers = edu.DmaTransfers - transfers0;
        CheckDma(session, result, assignment, transfers, faults, edu, strace);
        CheckInterrupts(session, edu, edu.MsiSent - msi0, strace);

        // Cleaning up only counts once there was something to clean up.
        if (!strace.Any(r => r.Request == "VFIO_IOMMU_MAP_DMA" && r.Return == 0))
        {
            const string NothingMapped = "not graded: the driver never mapped a buffer (no successful VFIO_IOMMU_MAP_DMA), so there was nothing to clean up";
            session.Check("nothing pinned when the driver returns", 10, false, NothingMapped);
            session.Check("every fd closed", 10, false, NothingMapped);
            int quiet = sim.UnexpectedWarnings.Count;
            session.Check("the kernel stayed quiet", 5, quiet == 0, quiet == 0 ? "no WARN" : $"the kernel reported {quiet} WARN(s): {sim.UnexpectedWarnings[0]}");
            return session.Grade(this);
        }

        long leftPinned = pinnedAtEnd - pinned0;
        session.Check("nothing pinned when the driver returns", 10, leftPinned == 0,
            leftPinned == 0
                ? "no page is pinned for DMA any more"
                : string.Create(CultureInfo.InvariantCulture, $"{leftPinned} page(s) were still pinned when Run returned: VFIO_IOMMU_MAP_DMA pins the buffer's pages (and charges them to locked_vm) until VFIO_IOMMU_UNMAP_DMA of that IOVA range, or until the container is closed. {(LabEvidence.CountIoctl(strace, "VFIO_IOMMU_UNMAP_DMA") == 0 ? "The trace has no VFIO_IOMMU_UNMAP_DMA at all. " : "")}A driver unmaps what it mapped before it closes the container; see the handout's step 6."));
        bool closed = vfioFdsAtEnd.Count == 0 && eventfdsAtEnd.Count == 0;
        session.Check("every fd closed", 10, closed,
            closed
                ? "the device, group, container and eventfd fds are closed"
                : $"still open when Run returned: {string.Join(", ", vfioFdsAtEnd.Concat(eventfdsAtEnd.Select(fd => string.Create(CultureInfo.InvariantCulture, $"fd {fd} (an eventfd)"))))}. " +
                  "An open device fd keeps edu's registration reference and blocks an unbind; the group and container fds keep the IOMMU domain and its mappings. Close the device, then the group, then the container (or dispose the VfioSession), and close the eventfd.");
        int warnings = sim.UnexpectedWarnings.Count;
        session.Check("the kernel stayed quiet", 5, warnings == 0,
            warnings == 0 ? "no WARN" : $"the kernel reported {warnings} WARN(s): {sim.UnexpectedWarnings[0]}");
        return session.Grade(this);
    }

    private static void CheckRegisters(LabSession session, EduDriverResult? result, EduAssignment assignment)
    {
        uint wantLive = ~assignment.LivenessProbe;
        if (result is null)
        {
            session.Check("identification and liveness", 10, false, "no result: Run did not return one");
            return;
        }

        if (result.Identification != EduDevice.Identification)
        {
            session.Check("identification and liveness", 10, false,
                $"you returned identification {LabEvidence.Hex(result.Identification)}; edu's register at BAR0 + 0x00 reads {LabEvidence.Hex(EduDevice.Identification)} (0xRRrr00ed: major 1, minor 0). Read 4 bytes of region 0 (VFIO_PCI_BAR0_REGION_INDEX) at offset 0, by pread or through an mmap of the region.");
            return;
        }

        session.Check("identification and liveness", 10, result.Liveness == wantLive,
            result.Liveness == wantLive
                ? $"identification {LabEvidence.Hex(result.Identification)}, liveness {LabEvidence.Hex(result.Liveness)} = ~{LabEvidence.Hex(assignment.LivenessProbe)}"
                : $"you returned liveness {LabEvidence.Hex(result.Liveness)}; after a store of {LabEvidence.Hex(assignment.LivenessProbe)} at BAR0 + 0x04 edu reads back its bitwise inverse, {LabEvidence.Hex(wantLive)}. Store the assignment's LivenessProbe (4 bytes), then load the same register.");
    }

    private static void CheckFactorial(LabSession session, EduDriverResult? result, EduAssignment assignment, long computed)
    {
        uint want = Factorial(assignment.FactorialOperand);
        string name = string.Create(CultureInfo.InvariantCulture, $"edu computes {assignment.FactorialOperand}!");
        if (computed == 0)
        {
            session.Check(name, 10, false,
                "edu computed no factorial: a 4-byte store of the operand at BAR0 + 0x08 starts it (with the status register's 0x80 bit set at BAR0 + 0x20 first, edu raises interrupt 0x01 when done). The value must come from the device, not from your own code.");
            return;
        }

        bool ok = result is not null && result.Factorial == want;
        session.Check(name, 10, ok,
            ok
                ? string.Create(CultureInfo.InvariantCulture, $"edu computed {assignment.FactorialOperand}! = {want}")
                : string.Create(CultureInfo.InvariantCulture, $"you returned {result?.Factorial.ToString(CultureInfo.InvariantCulture) ?? "nothing"}; edu computed {assignment.FactorialOperand}! = {want}. The register reads the operand until the computation ends (status bit 0x01 clears, interrupt 0x01 if you asked for it): wait for the interrupt, then load BAR0 + 0x08."));
    }

    private static void CheckDma(LabSession session, EduDriverResult? result, EduAssignment assignment, long transfers, IReadOnlyList<IommuFault> faults, EduDevice edu, IReadOnlyList<SyscallRecord> strace)
    {
        const string name = "DMA to edu and back through the IOMMU";
        IommuFault? fault = faults.FirstOrDefault(f => f.Device == edu.Name);
        if (fault is not null)
        {
            string why = UsedVirtualAddress(fault.Iova, edu.DmaMask, strace) is { } va
                ? $" That bus address is your buffer's virtual address {LabEvidence.Hex(va)} as edu's {BitLength(edu.DmaMask)}-bit DMA engine sees it: a device never sees your process's addresses, only IOVAs. Program edu's DMA source/destination with the IOVA you gave VFIO_IOMMU_MAP_DMA."
                : " Nothing was mapped there for edu's domain: either the IOVA was never given to VFIO_IOMMU_MAP_DMA or it was already unmapped. Program edu with an IOVA inside a mapping that is still in place.";
            session.Check(name, 20, false,
                $"the IOMMU blocked edu: {fault.Access} at IOVA {LabEvidence.Hex(fault.Iova)}, reason {fault.Reason}.{why}");
            return;
        }

        if (edu.DmaErrors > 0 && edu.LastDmaResult == Errno.EIO.Negative())
        {
            session.Check(name, 20, false,
                "edu's DMA failed with EIO: bus mastering was off. vfio-pci does not set PCI_COMMAND's bus master bit (0x4) for you; read the command register from the config region (offset 0x4) and write it back with 0x4 set before starting a transfer.");
            return;
        }

        if (edu.DmaRangeErrors > 0)
        {
            session.Check(name, 20, false,
                $"edu refused a transfer: its buffer side must lie in [{LabEvidence.Hex(EduDevice.DmaBufferStart)}, {LabEvidence.Hex(EduDevice.DmaBufferStart + EduDevice.DmaBufferSize)}) (the source for device -> RAM, the destination for RAM -> device).");
            return;
        }

        bool back = result is not null && result.Returned.AsSpan().SequenceEqual(assignment.Payload);
        if (transfers < 2)
        {
            session.Check(name, 20, false,
                string.Create(CultureInfo.InvariantCulture, $"edu moved data {transfers} time(s); the lab wants two transfers: RAM -> edu's buffer at 0x40000 (command 0x1 | 0x4), then edu's buffer -> RAM (command 0x1 | 0x2 | 0x4), each at an IOVA you mapped with VFIO_IOMMU_MAP_DMA."));
            return;
        }

        session.Check(name, 20, back,
            back
                ? string.Create(CultureInfo.InvariantCulture, $"edu moved {transfers} transfers with no fault; the {assignment.Payload.Length} payload bytes came back intact")
                : string.Create(CultureInfo.InvariantCulture, $"edu made {transfers} transfers, but the bytes you returned are not the payload ({(result is null ? "no result" : $"{result.Returned.Length} bytes, first differing at {FirstDifference(result.Returned, assignment.Payload)}")}). Write the payload into the buffer before the first transfer, and read back where the second transfer wrote (its destination IOVA maps to your buffer at the same offset)."));
    }

    private static void CheckInterrupts(LabSession session, EduDevice edu, long msiSent, IReadOnlyList<SyscallRecord> strace)
    {
        const string name = "completion MSIs delivered and consumed";
        HashSet<int> eventfds = LabEvidence.EventfdsCreated(strace);
        int consumed = strace.Count(r => r.Syscall == "read" && eventfds.Contains(r.Fd) && r.Return == 8);
        if (edu.MsiWithoutBusMaster > 0)
        {
            session.Check(name, 15, false,
                "edu could not send its MSI: bus mastering was off. An MSI is a memory write by the device, so it needs PCI_COMMAND's bus master bit (0x4) like DMA does; vfio-pci leaves it to you. Set it through the config region before you start the device.");
            return;
        }

        if (msiSent == 0 && edu.IntxRaises > 0)
        {
            session.Check(name, 15, false,
                "edu raised its interrupt on INTx, not MSI: MSI was never enabled. vfio-pci enables edu's MSI when you give it an eventfd with VFIO_DEVICE_SET_IRQS on VFIO_PCI_MSI_IRQ_INDEX (1), ACTION_TRIGGER | DATA_EVENTFD; then each interrupt signals that eventfd.");
            return;
        }

        if (msiSent == 0)
        {
            session.Check(name, 15, false,
                "edu sent no interrupt: ask for one (status bit 0x80 before a factorial, command bit 0x4 with a DMA) and enable MSI with an eventfd (VFIO_DEVICE_SET_IRQS on VFIO_PCI_MSI_IRQ_INDEX).");
            return;
        }

        session.Check(name, 15, consumed > 0,
            consumed > 0
                ? string.Create(CultureInfo.InvariantCulture, $"edu sent {msiSent} MSI(s); the driver read its eventfd {consumed} time(s)")
                : string.Create(CultureInfo.InvariantCulture, $"edu sent {msiSent} MSI(s) but no read() of an eventfd returned its 8-byte count: wait with poll() (or a blocking read) on the eventfd you gave VFIO_DEVICE_SET_IRQS, then read it to consume the interrupt."));
    }

    // The fault's bus address as edu produced it from one of the process's mmap'd addresses.
    private static ulong? UsedVirtualAddress(ulong iova, ulong mask, IReadOnlyList<SyscallRecord> strace)
    {
        foreach (SyscallRecord r in strace)
        {
            if (r.Syscall == "mmap" && r.Return > 0)
            {
                ulong va = (ulong)r.Return;
                ulong delta = (iova - (va & mask)) & mask;
                if (delta < (16UL << 20))
                {
                    return va + delta;
                }
            }
        }

        return null;
    }

    private static int BitLength(ulong mask) => 64 - System.Numerics.BitOperations.LeadingZeroCount(mask);

    private static int FirstDifference(byte[] a, byte[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        for (int i = 0; i < n; i++)
        {
            if (a[i] != b[i])
            {
                return i;
            }
        }

        return n;
    }

    private static uint Factorial(uint n)
    {
        uint r = 1;
        for (uint i = 2; i <= n; i++)
        {
            r *= i;
        }

        return r;
    }

    private static byte[] BuildPayload()
    {
        byte[] text = System.Text.Encoding.ASCII.GetBytes("lab 3: these bytes went into edu and came back through the IOMMU. ");
        byte[] b = new byte[512];
        for (int i = 0; i < b.Length; i++)
        {
            b[i] = text[i % text.Length];
        }

        return b;
    }
}

