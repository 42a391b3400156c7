"""Client reports: what the appliance did for each client over a period (recovery points made, RPO met,
verification results, storage used over time), as data, printable HTML and scheduled e-mail; and the
appliance summary across clients. The history they are made from is recorded by ``bulwarkd``
(:mod:`appliance.reports.history`), because retention prunes the points a report must still count."""
