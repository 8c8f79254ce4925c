// Lab 3: a user-space edu driver through vfio — identification and liveness, a factorial,
// DMA into edu and back through the IOMMU, the completion MSI on an eventfd, and a clean exit.

using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;
using Vfio.Sim.Labs;

namespace LabCourse;

/// <summary>Lab 3's solution.</summary>
internal sealed class EduDriver : EduDriverSolution
{
    private const ulong Iova = 0x10_0000;      // edu's DMA engine sees 28 address bits: stay below 256 MiB
    private const ulong BufferSize = 0x2000;
    private const ulong BackOffset = 0x1000;   // edu writes the bytes back one page further on
    private const ulong EduBuffer = 0x40000;

    /// <inheritdoc/>
    public override EduDriverResult Run(LabEnvironment env, EduAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(assignment);
        SimProcess p = env.Process;
        using VfioSession edu = env.Sim.Open(p, env.Device!);
        edu.Device.Reset();
        ushort command = edu.Device.ReadConfig16(PciRegs.Command);
        edu.Device.WriteConfig16(PciRegs.Command, (ushort)(command | PciRegs.CommandMemory | PciRegs.CommandMaster));

        using VfioRegionMapping bar = edu.Device.MmapRegion(VfioPciIndex.Bar0, 0, 1 << 20);
        uint id = bar.Read32(0x00);
        bar.Write32(0x04, assignment.LivenessProbe);
        uint liveness = bar.Read32(0x04);

        int irq = p.Eventfd(0);
        edu.Device.SetIrqEventfd(VfioPciIndex.IrqMsi, irq);

        bar.Write32(0x20, 0x80);                      // interrupt 0x01 when the factorial is done
        bar.Write32(0x08, assignment.FactorialOperand);
        WaitForInterrupt(p, irq, bar, 0x001);
        uint factorial = bar.Read32(0x08);

        byte[] back;
        using (UserBuffer buffer = VfioSim.Allocate(p, BufferSize))
        {
            edu.Container.MapDma(buffer.Address, Iova, BufferSize);
            buffer.Write(0, assignment.Payload);
            Dma(p, irq, bar, Iova, EduBuffer, assignment.Payload.Length, 0x1 | 0x4);
            Dma(p, irq, bar, EduBuffer, Iova + BackOffset, assignment.Payload.Length, 0x1 | 0x2 | 0x4);
            back = buffer.Read(BackOffset, assignment.Payload.Length);
            edu.Container.UnmapDma(Iova, BufferSize);
        }

        edu.Device.DisableIrqs(VfioPciIndex.IrqMsi);
        p.Close(irq);
        return new EduDriverResult(id, liveness, factorial, back);
    }

    private static void Dma(SimProcess p, int irq, VfioRegionMapping bar, ulong source, ulong destination, int count, ulong command)
    {
        bar.Write64(0x80, source);
        bar.Write64(0x88, destination);
        bar.Write64(0x90, (ulong)count);
        bar.Write64(0x98, command);
        WaitForInterrupt(p, irq, bar, 0x100);
    }

    // Sleep in poll() until the MSI's eventfd is readable, consume its count, acknowledge edu.
    private static void WaitForInterrupt(SimProcess p, int irq, VfioRegionMapping bar, uint expected)
    {
        Span<PollFd> fds = [new PollFd(irq, PollEvents.POLLIN)];
        if (p.Poll(fds, 10_000) != 1)
        {
            throw new TimeoutException("no interrupt from edu within 10 s");
        }

        Span<byte> count = stackalloc byte[8];
        p.Read(irq, count);
        uint status = bar.Read32(0x24);
        bar.Write32(0x64, status);
        if ((status & expected) == 0)
        {
            throw new InvalidOperationException($"edu's interrupt status is 0x{status:x}, expected 0x{expected:x}");
        }
    }
}
