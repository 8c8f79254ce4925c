// The code of docs/design-variants.md ("Selecting a variant"), run as written, so it stays true.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Iommu.Type1;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Machine;

namespace Vfio.Tests.Docs;

public sealed class DesignVariantsDocExampleTests
{
    [Test]
    public void SelectingAVariant_RunsAsWritten()
    {
        SimMachine machine = MachineBuilder.Default();
        VfioCore vfio = VfioCore.Load(machine, new VfioOptions
        {
            Design = VfioDesign.Default with
            {
                Viability = VfioViabilityModel.LegacyNotifier,   // the ≤v5.18 group notifier
                TrackDevicesDuringUnbind = false,                // ... before its unbound_list fix
            },
        });
        VfioIommuType1.Load(machine);
        VfioPciDriver.Load(machine);

        Assert.That(vfio.Design.Viability, Is.EqualTo(VfioViabilityModel.LegacyNotifier));
        Assert.That(vfio.Design.TrackDevicesDuringUnbind, Is.False);
        Assert.That(vfio.Design with { Viability = VfioViabilityModel.DmaOwnership, TrackDevicesDuringUnbind = true }, Is.EqualTo(VfioDesign.Default), "everything else is today's kernel");
    }
}
